package aws

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/rds/types"

	"github.com/pgkill/pgkill/pg"
)

// engines are the PostgreSQL engines; MySQL and the rest are never targets.
var engines = []string{"postgres", "aurora-postgresql"}

// Discover lists d's instances, region by region in d's order and by
// identifier within a region. It fails as a whole when any region cannot be
// read: a partial fleet would silently drop the instances of that region.
func (a *AWS) Discover(ctx context.Context, d Discovery) ([]pg.TargetSpec, error) {
	regions := d.Regions
	if len(regions) == 0 {
		r, err := a.region()
		if err != nil {
			return nil, err
		}
		regions = []string{r}
	}
	var out []pg.TargetSpec
	for _, region := range regions {
		specs, err := a.discoverRegion(ctx, d, region)
		if err != nil {
			return nil, fmt.Errorf("discover RDS instances in %s: %w", region, err)
		}
		out = append(out, specs...)
	}
	return out, nil
}

func (a *AWS) discoverRegion(ctx context.Context, d Discovery, region string) ([]pg.TargetSpec, error) {
	client := a.rdsClient(region)
	filters := []types.Filter{{Name: sdkaws.String("engine"), Values: engines}}
	if len(d.Clusters) > 0 {
		filters = append(filters, types.Filter{Name: sdkaws.String("db-cluster-id"), Values: d.Clusters})
	}
	var instances []types.DBInstance
	pages := rds.NewDescribeDBInstancesPaginator(client, &rds.DescribeDBInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("DescribeDBInstances: %w", err)
		}
		instances = append(instances, page.DBInstances...)
	}
	roles, err := a.clusterRoles(ctx, client, d, instances)
	if err != nil {
		return nil, err
	}
	var out []pg.TargetSpec
	for _, in := range instances {
		if !wanted(d, in) {
			continue
		}
		id := sdkaws.ToString(in.DBInstanceIdentifier)
		spec := pg.TargetSpec{Name: id, Origin: "RDS instance in " + region}
		if c := sdkaws.ToString(in.DBClusterIdentifier); c != "" {
			spec.Origin = "Aurora cluster " + c + " in " + region
			spec.Role = roles[id] // "" while the cluster does not list it yet
		} else if sdkaws.ToString(in.ReadReplicaSourceDBInstanceIdentifier) != "" {
			spec.Role = "replica"
		}
		endpoint := net.JoinHostPort(sdkaws.ToString(in.Endpoint.Address), strconv.Itoa(int(sdkaws.ToInt32(in.Endpoint.Port))))
		spec.DSN = d.dsn(endpoint)
		if d.IAM {
			spec.Auth = a.IAM(endpoint, region, d.User)
		} else {
			secretRegion, _ := a.region(regionOfARN(d.Secret), region)
			spec.Auth = a.Secret(d.Secret, secretRegion, false)
		}
		out = append(out, spec)
	}
	return out, nil
}

// wanted says whether an instance becomes a target: a PostgreSQL engine, an
// endpoint (none while it is being created) and every tag of d.
func wanted(d Discovery, in types.DBInstance) bool {
	engine := sdkaws.ToString(in.Engine)
	if (engine != "postgres" && engine != "aurora-postgresql") || in.Endpoint == nil || sdkaws.ToString(in.Endpoint.Address) == "" {
		return false
	}
	for k, v := range d.Tags {
		found := false
		for _, t := range in.TagList {
			if sdkaws.ToString(t.Key) == k && sdkaws.ToString(t.Value) == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// clusterRoles maps each Aurora instance to "writer" or "reader", from
// DescribeDBClusters (instances do not say which they are).
func (a *AWS) clusterRoles(ctx context.Context, client *rds.Client, d Discovery, instances []types.DBInstance) (map[string]string, error) {
	roles := map[string]string{}
	inCluster := false
	for _, in := range instances {
		inCluster = inCluster || sdkaws.ToString(in.DBClusterIdentifier) != ""
	}
	if !inCluster {
		return roles, nil
	}
	filters := []types.Filter{{Name: sdkaws.String("engine"), Values: []string{"aurora-postgresql"}}}
	if len(d.Clusters) > 0 {
		filters = append(filters, types.Filter{Name: sdkaws.String("db-cluster-id"), Values: d.Clusters})
	}
	pages := rds.NewDescribeDBClustersPaginator(client, &rds.DescribeDBClustersInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("DescribeDBClusters: %w", err)
		}
		for _, c := range page.DBClusters {
			for _, m := range c.DBClusterMembers {
				role := "reader"
				if sdkaws.ToBool(m.IsClusterWriter) {
					role = "writer"
				}
				roles[sdkaws.ToString(m.DBInstanceIdentifier)] = role
			}
		}
	}
	return roles, nil
}

// dsn is a discovered instance's connection string.
func (d Discovery) dsn(endpoint string) string {
	u := url.URL{Scheme: "postgres", Host: endpoint, Path: "/" + d.Database}
	if d.User != "" {
		u.User = url.User(d.User)
	}
	u.RawQuery = url.Values{"sslmode": {d.SSLMode}}.Encode()
	return u.String()
}
