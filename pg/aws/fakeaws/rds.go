package fakeaws

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Instance is one DB instance as DescribeDBInstances shows it.
type Instance struct {
	ID        string
	Engine    string // postgres, aurora-postgresql, mysql, …
	Status    string // default "available"
	Address   string // "" while creating: no Endpoint element
	Port      int
	Cluster   string // Aurora cluster identifier
	ReplicaOf string // RDS read replica's source instance
	Tags      map[string]string
}

// Cluster is one Aurora cluster; its members are the instances naming it.
type Cluster struct {
	ID     string
	Engine string
	Writer string // instance identifier
}

// AddInstance creates an instance in region.
func (s *Server) AddInstance(region string, in Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[region] = append(s.instances[region], in)
}

// DeleteInstance removes an instance.
func (s *Server) DeleteInstance(region, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[region] = slices.DeleteFunc(s.instances[region], func(in Instance) bool { return in.ID == id })
}

// AddCluster creates an Aurora cluster in region.
func (s *Server) AddCluster(region string, c Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters[region] = append(s.clusters[region], c)
}

// Failover makes instance the writer of cluster, as an Aurora failover does.
func (s *Server) Failover(region, cluster, instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.clusters[region] {
		if c.ID == cluster {
			s.clusters[region][i].Writer = instance
		}
	}
}

// SetPageSize caps every page (the real API takes MaxRecords 20-100).
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	s.pageSize = n
	s.mu.Unlock()
}

// FailRDS makes every RDS call answer err (nil: answer again).
func (s *Server) FailRDS(err *APIError) {
	s.mu.Lock()
	s.rdsErr = err
	s.mu.Unlock()
}

const rdsNS = "http://rds.amazonaws.com/doc/2014-10-31/"

func (s *Server) rds(w http.ResponseWriter, r *http.Request, region, body string) {
	form, err := url.ParseQuery(body)
	if err != nil {
		s.tb.Errorf("fakeaws: RDS form: %v", err)
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	action := form.Get("Action")
	s.record(r, "rds", region, action)
	if v := form.Get("Version"); v != "2014-10-31" {
		s.tb.Errorf("fakeaws: RDS API version %q", v)
	}
	s.mu.Lock()
	failure := s.rdsErr
	s.mu.Unlock()
	if failure != nil {
		s.rdsError(w, *failure)
		return
	}
	filters, err := parseFilters(form)
	if err != nil {
		s.rdsError(w, APIError{400, "InvalidParameterValue", err.Error()})
		return
	}
	switch action {
	case "DescribeDBInstances":
		s.describeInstances(w, region, form, filters)
	case "DescribeDBClusters":
		s.describeClusters(w, region, form, filters)
	default:
		s.tb.Errorf("fakeaws: unexpected RDS action %q", action)
		s.rdsError(w, APIError{400, "InvalidAction", "unsupported action " + action})
	}
}

// parseFilters reads Filters.Filter.N.Name / Filters.Filter.N.Values.Value.M.
func parseFilters(form url.Values) (map[string][]string, error) {
	out := map[string][]string{}
	for n := 1; ; n++ {
		name := form.Get(fmt.Sprintf("Filters.Filter.%d.Name", n))
		if name == "" {
			return out, nil
		}
		switch name {
		case "engine", "db-cluster-id", "db-instance-id":
		default:
			return nil, fmt.Errorf("unrecognized filter name: %s", name)
		}
		for m := 1; ; m++ {
			v := form.Get(fmt.Sprintf("Filters.Filter.%d.Values.Value.%d", n, m))
			if v == "" {
				break
			}
			out[name] = append(out[name], v)
		}
	}
}

func pass(filters map[string][]string, name, value string) bool {
	vs, ok := filters[name]
	return !ok || slices.Contains(vs, value)
}

// page cuts items by Marker (an offset here; opaque to clients) and
// MaxRecords.
func (s *Server) page(form url.Values, n int) (from, to int, next string, err error) {
	s.mu.Lock()
	size := s.pageSize
	s.mu.Unlock()
	if mr := form.Get("MaxRecords"); mr != "" {
		m, err := strconv.Atoi(mr)
		if err != nil || m < 20 || m > 100 {
			return 0, 0, "", fmt.Errorf("MaxRecords must be 20-100, not %q", mr)
		}
		size = min(size, m)
	}
	if mk := form.Get("Marker"); mk != "" {
		off, err := strconv.Atoi(strings.TrimPrefix(mk, "fake-marker-"))
		if err != nil || !strings.HasPrefix(mk, "fake-marker-") {
			return 0, 0, "", fmt.Errorf("invalid marker %q", mk)
		}
		from = off
	}
	to = min(from+size, n)
	if to < n {
		next = fmt.Sprintf("fake-marker-%d", to)
	}
	return from, min(to, n), next, nil
}

type xmlTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type xmlEndpoint struct {
	Address      string `xml:"Address"`
	Port         int    `xml:"Port"`
	HostedZoneID string `xml:"HostedZoneId"`
}

type xmlInstance struct {
	DBInstanceIdentifier                  string       `xml:"DBInstanceIdentifier"`
	DBInstanceClass                       string       `xml:"DBInstanceClass"`
	Engine                                string       `xml:"Engine"`
	DBInstanceStatus                      string       `xml:"DBInstanceStatus"`
	Endpoint                              *xmlEndpoint `xml:"Endpoint,omitempty"`
	DBClusterIdentifier                   string       `xml:"DBClusterIdentifier,omitempty"`
	ReadReplicaSourceDBInstanceIdentifier string       `xml:"ReadReplicaSourceDBInstanceIdentifier,omitempty"`
	DbiResourceID                         string       `xml:"DbiResourceId"`
	IAMDatabaseAuthenticationEnabled      bool         `xml:"IAMDatabaseAuthenticationEnabled"`
	TagList                               []xmlTag     `xml:"TagList>Tag"`
}

func (s *Server) describeInstances(w http.ResponseWriter, region string, form url.Values, filters map[string][]string) {
	s.mu.Lock()
	var match []Instance
	for _, in := range s.instances[region] {
		if pass(filters, "engine", in.Engine) && pass(filters, "db-cluster-id", in.Cluster) && pass(filters, "db-instance-id", in.ID) {
			match = append(match, in)
		}
	}
	s.mu.Unlock()
	if id := form.Get("DBInstanceIdentifier"); id != "" {
		match = slices.DeleteFunc(match, func(in Instance) bool { return in.ID != id })
	}
	from, to, next, err := s.page(form, len(match))
	if err != nil {
		s.rdsError(w, APIError{400, "InvalidParameterValue", err.Error()})
		return
	}
	var out []xmlInstance
	for _, in := range match[from:to] {
		x := xmlInstance{
			DBInstanceIdentifier: in.ID, DBInstanceClass: "db.r6g.large", Engine: in.Engine,
			DBInstanceStatus: in.Status, DBClusterIdentifier: in.Cluster,
			ReadReplicaSourceDBInstanceIdentifier: in.ReplicaOf,
			DbiResourceID:                         "db-" + strings.ToUpper(strings.ReplaceAll(in.ID, "-", "")),
			IAMDatabaseAuthenticationEnabled:      true,
		}
		if x.DBInstanceStatus == "" {
			x.DBInstanceStatus = "available"
		}
		if in.Address != "" {
			x.Endpoint = &xmlEndpoint{Address: in.Address, Port: in.Port, HostedZoneID: "Z29XKXDKYMONMX"}
		}
		for k, v := range in.Tags {
			x.TagList = append(x.TagList, xmlTag{k, v})
		}
		slices.SortFunc(x.TagList, func(a, b xmlTag) int { return strings.Compare(a.Key, b.Key) })
		out = append(out, x)
	}
	type result struct {
		XMLName     xml.Name      `xml:"DescribeDBInstancesResult"`
		DBInstances []xmlInstance `xml:"DBInstances>DBInstance"`
		Marker      string        `xml:"Marker,omitempty"`
	}
	s.rdsAnswer(w, "DescribeDBInstances", result{DBInstances: out, Marker: next})
}

type xmlMember struct {
	DBInstanceIdentifier          string `xml:"DBInstanceIdentifier"`
	IsClusterWriter               bool   `xml:"IsClusterWriter"`
	DBClusterParameterGroupStatus string `xml:"DBClusterParameterGroupStatus"`
	PromotionTier                 int    `xml:"PromotionTier"`
}

type xmlCluster struct {
	DBClusterIdentifier string      `xml:"DBClusterIdentifier"`
	Engine              string      `xml:"Engine"`
	Status              string      `xml:"Status"`
	Endpoint            string      `xml:"Endpoint"`
	ReaderEndpoint      string      `xml:"ReaderEndpoint"`
	Port                int         `xml:"Port"`
	DBClusterMembers    []xmlMember `xml:"DBClusterMembers>DBClusterMember"`
}

func (s *Server) describeClusters(w http.ResponseWriter, region string, form url.Values, filters map[string][]string) {
	s.mu.Lock()
	var out []xmlCluster
	for _, c := range s.clusters[region] {
		if !pass(filters, "engine", c.Engine) || !pass(filters, "db-cluster-id", c.ID) {
			continue
		}
		x := xmlCluster{
			DBClusterIdentifier: c.ID, Engine: c.Engine, Status: "available", Port: 5432,
			Endpoint:       c.ID + ".cluster-abc." + region + ".rds.amazonaws.com",
			ReaderEndpoint: c.ID + ".cluster-ro-abc." + region + ".rds.amazonaws.com",
		}
		for _, in := range s.instances[region] {
			if in.Cluster == c.ID {
				x.DBClusterMembers = append(x.DBClusterMembers, xmlMember{in.ID, in.ID == c.Writer, "in-sync", 1})
			}
		}
		out = append(out, x)
	}
	s.mu.Unlock()
	from, to, next, err := s.page(form, len(out))
	if err != nil {
		s.rdsError(w, APIError{400, "InvalidParameterValue", err.Error()})
		return
	}
	type result struct {
		XMLName    xml.Name     `xml:"DescribeDBClustersResult"`
		DBClusters []xmlCluster `xml:"DBClusters>DBCluster"`
		Marker     string       `xml:"Marker,omitempty"`
	}
	s.rdsAnswer(w, "DescribeDBClusters", result{DBClusters: out[from:to], Marker: next})
}

// rdsAnswer writes <ActionResponse><ActionResult>…</ActionResult>
// <ResponseMetadata>…</ResponseMetadata></ActionResponse>; result
// marshals as the ActionResult element.
func (s *Server) rdsAnswer(w http.ResponseWriter, action string, result any) {
	b, err := xml.Marshal(result)
	if err != nil {
		s.tb.Errorf("fakeaws: %v", err)
		return
	}
	body := fmt.Sprintf(`<%sResponse xmlns="%s">%s<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		action, rdsNS, b, s.requestID(), action)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

func (s *Server) rdsError(w http.ResponseWriter, e APIError) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.Status)
	kind := "Sender"
	if e.Status >= 500 {
		kind = "Receiver"
	}
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(e.Message))
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		rdsNS, kind, e.Code, msg.String(), s.requestID())
}
