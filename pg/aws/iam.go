package aws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/pgkill/pgkill/pg"
)

// iamAuth logs in with an IAM database authentication token: a SigV4
// presigned URL for action "connect", valid 15 minutes, minted from the
// standard credential chain for every new connection (pools recycle
// connections, so a token made at start-up would expire).
type iamAuth struct {
	a        *AWS
	endpoint string // host:port; without the port the token is silently invalid
	region   string
	user     string
}

// IAM returns the Auth of a target that logs in as user with IAM tokens for
// endpoint (host:port) in region.
func (a *AWS) IAM(endpoint, region, user string) pg.Auth {
	return &iamAuth{a: a, endpoint: endpoint, region: region, user: user}
}

func (i *iamAuth) Login(ctx context.Context) (pg.Login, error) {
	if i.a.cfg.Credentials == nil {
		return pg.Login{}, fmt.Errorf("no AWS credentials found (environment, shared config, web identity, ECS task role or instance profile)")
	}
	token, err := auth.BuildAuthToken(ctx, i.endpoint, i.region, i.user, i.a.cfg.Credentials)
	if err != nil {
		return pg.Login{}, fmt.Errorf("IAM token for %s: %w", i.endpoint, err)
	}
	return pg.Login{User: i.user, Password: token}, nil
}

// Refused: every connection already had a fresh token, so another one
// would be refused too.
func (i *iamAuth) Refused() bool { return false }

func (i *iamAuth) Advice() string {
	return fmt.Sprintf("check that pgkill's IAM role may rds-db:connect as arn:aws:rds-db:%s:<account>:dbuser:<DbiResourceId>/%s, "+
		"that the instance has IAM database authentication enabled, that the database user %s exists with GRANT rds_iam TO %s, "+
		"and that the connection uses TLS", i.region, i.user, i.user, i.user)
}

func (i *iamAuth) String() string {
	return fmt.Sprintf("IAM token for user %s at %s (%s)", i.user, i.endpoint, i.region)
}
