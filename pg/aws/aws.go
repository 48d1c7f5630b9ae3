package aws

import (
	"context"
	"fmt"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// AWS holds the SDK configuration and one API client per service and
// region. Safe for concurrent use.
type AWS struct {
	cfg sdkaws.Config
	// SecretTTL is how long a secret read is reused for new connections
	// (a refused login re-reads it at once). Default 5 minutes.
	SecretTTL time.Duration
	now       func() time.Time

	mu          sync.Mutex
	rds         map[string]*rds.Client
	secrets     map[string]*secretsmanager.Client
	secretAuths map[string]*secretAuth // shared by the targets of one secret
}

// Load reads the SDK's standard configuration chain (environment, shared
// config, web identity on EKS, ECS task role, instance profile): AWS
// credentials never come from pgkill's own settings. It does not call
// AWS: credentials are fetched when first needed.
func Load(ctx context.Context) (*AWS, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	return New(cfg), nil
}

// New uses cfg as given (tests set BaseEndpoint and static credentials).
func New(cfg sdkaws.Config) *AWS {
	return &AWS{
		cfg:       cfg,
		SecretTTL: 5 * time.Minute,
		now:       time.Now,
		rds:       map[string]*rds.Client{},
		secrets:   map[string]*secretsmanager.Client{},

		secretAuths: map[string]*secretAuth{},
	}
}

// region picks the first region given, else the SDK's configured one.
func (a *AWS) region(candidates ...string) (string, error) {
	for _, r := range candidates {
		if r != "" {
			return r, nil
		}
	}
	if a.cfg.Region != "" {
		return a.cfg.Region, nil
	}
	return "", fmt.Errorf("no AWS region: set pgkill_region, use an RDS hostname or an ARN, or set AWS_REGION")
}

func (a *AWS) rdsClient(region string) *rds.Client {
	return perRegion(a, a.rds, region, func() *rds.Client {
		return rds.NewFromConfig(a.cfg, func(o *rds.Options) { o.Region = region })
	})
}

func (a *AWS) secretsClient(region string) *secretsmanager.Client {
	return perRegion(a, a.secrets, region, func() *secretsmanager.Client {
		return secretsmanager.NewFromConfig(a.cfg, func(o *secretsmanager.Options) { o.Region = region })
	})
}

// perRegion is clients' client for region, made the first time it is asked
// for (under a.mu).
func perRegion[C any](a *AWS, clients map[string]C, region string, newClient func() C) C {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := clients[region]
	if !ok {
		c = newClient()
		clients[region] = c
	}
	return c
}
