package bot

import (
	"context"
	"errors"
	"io"
)

// Serve runs the Slack bot until ctx ends.
func Serve(ctx context.Context, cfg Config, db Postgres, logOut io.Writer) error {
	return errors.New("serve: the Slack bot is not built yet")
}
