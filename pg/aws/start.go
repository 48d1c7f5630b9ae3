package aws

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pgkill/pgkill/pg"
)

// Start sets discovery up from setting (PGKILL_RDS_DISCOVER); it returns
// nil when setting is empty. Otherwise it refreshes fleet once: an error
// there (a malformed setting, no access, a name clash with static) is a
// start-up error. bot/discovery's Loop keeps the fleet current with the
// returned Refresher, whose Status tells how the refreshes go. a may be
// nil: the AWS configuration is loaded then.
func Start(ctx context.Context, setting string, a *AWS, static []pg.TargetSpec, fleet FleetSetter, log *slog.Logger) (*Refresher, error) {
	d, err := ParseDiscovery(setting)
	if err != nil || !d.Enabled() {
		if err != nil {
			err = fmt.Errorf("PGKILL_RDS_DISCOVER: %w", err)
		}
		return nil, err
	}
	if a == nil {
		if a, err = Load(ctx); err != nil {
			return nil, err
		}
	}
	r := NewRefresher(a, d, static, fleet, log)
	if _, err := r.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("PGKILL_RDS_DISCOVER: %w", err)
	}
	return r, nil
}
