package fakeaws

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// This is an independent implementation of AWS Signature Version 4, written
// from the specification, so that the SDK's signing is checked by something
// other than the SDK itself.

const (
	algorithm = "AWS4-HMAC-SHA256"
	// EmptyPayloadHash is the SHA-256 of nothing: RDS IAM tokens sign it.
	EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	amzDate          = "20060102T150405Z"
)

// Scope is a signature's credential scope.
type Scope struct {
	AccessKey string
	Date      string // 20060102
	Region    string
	Service   string
}

func parseScope(credential string) (Scope, error) {
	p := strings.Split(credential, "/")
	if len(p) != 5 || p[4] != "aws4_request" {
		return Scope{}, fmt.Errorf("credential %q is not KEY/DATE/REGION/SERVICE/aws4_request", credential)
	}
	return Scope{AccessKey: p[0], Date: p[1], Region: p[2], Service: p[3]}, nil
}

func (s Scope) String() string {
	return s.Date + "/" + s.Region + "/" + s.Service + "/aws4_request"
}

// verifyHeader checks a request signed in its Authorization header, as the
// SDK signs API calls. body is the request body already read.
func verifyHeader(r *http.Request, body []byte, secretOf func(string) (string, bool)) (Scope, error) {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, algorithm+" ")
	if !ok {
		return Scope{}, fmt.Errorf("authorization %q is not %s", auth, algorithm)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope, err := parseScope(fields["Credential"])
	if err != nil {
		return Scope{}, err
	}
	date := r.Header.Get("X-Amz-Date")
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payload {
		return Scope{}, fmt.Errorf("x-amz-content-sha256 %s does not match the body", h)
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, must := range []string{"host", "x-amz-date"} {
		if !contains(signed, must) {
			return Scope{}, fmt.Errorf("header %s is not signed (%v)", must, signed)
		}
	}
	canon := canonicalRequest(r.Method, r.URL.EscapedPath(), r.URL.Query(), headerValues(r, signed), signed, payload)
	return scope, check(scope, date, canon, fields["Signature"], secretOf)
}

// VerifyPresigned checks a presigned URL (without its scheme, as an RDS IAM
// token is written: host:port?Action=connect&…) signed over payloadHash.
func VerifyPresigned(token string, payloadHash string, secretOf func(string) (string, bool)) (Scope, url.Values, error) {
	u, err := url.Parse("https://" + token)
	if err != nil {
		return Scope{}, nil, err
	}
	q := u.Query()
	if q.Get("X-Amz-Algorithm") != algorithm {
		return Scope{}, nil, fmt.Errorf("algorithm %q", q.Get("X-Amz-Algorithm"))
	}
	scope, err := parseScope(q.Get("X-Amz-Credential"))
	if err != nil {
		return Scope{}, nil, err
	}
	sig := q.Get("X-Amz-Signature")
	signed := strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	unsigned := url.Values{}
	for k, v := range q {
		if k != "X-Amz-Signature" {
			unsigned[k] = v
		}
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon := canonicalRequest(http.MethodGet, path, unsigned, map[string]string{"host": u.Host}, signed, payloadHash)
	return scope, q, check(scope, q.Get("X-Amz-Date"), canon, sig, secretOf)
}

func check(scope Scope, date, canon, sig string, secretOf func(string) (string, bool)) error {
	t, err := time.Parse(amzDate, date)
	if err != nil {
		return fmt.Errorf("x-amz-date %q: %w", date, err)
	}
	if t.Format("20060102") != scope.Date {
		return fmt.Errorf("x-amz-date %s is not the scope's day %s", date, scope.Date)
	}
	secret, ok := secretOf(scope.AccessKey)
	if !ok {
		return fmt.Errorf("unknown access key %q", scope.AccessKey)
	}
	sum := sha256.Sum256([]byte(canon))
	toSign := algorithm + "\n" + date + "\n" + scope.String() + "\n" + hex.EncodeToString(sum[:])
	key := mac([]byte("AWS4"+secret), scope.Date)
	for _, s := range []string{scope.Region, scope.Service, "aws4_request"} {
		key = mac(key, s)
	}
	want := hex.EncodeToString(mac(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return fmt.Errorf("signature mismatch (canonical request:\n%s)", canon)
	}
	return nil
}

func mac(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func canonicalRequest(method, path string, query url.Values, headers map[string]string, signed []string, payload string) string {
	var b strings.Builder
	b.WriteString(method + "\n" + path + "\n" + canonicalQuery(query) + "\n")
	for _, h := range signed {
		b.WriteString(h + ":" + strings.Join(strings.Fields(headers[h]), " ") + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n" + payload)
	return b.String()
}

func canonicalQuery(q url.Values) string {
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, escape(k)+"="+escape(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// escape is SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ as %XX.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// headerValues reads the signed headers as the client sent them: Go's
// server moves Host and Content-Length out of the header map.
func headerValues(r *http.Request, signed []string) map[string]string {
	out := map[string]string{}
	for _, h := range signed {
		switch h {
		case "host":
			out[h] = r.Host
		case "content-length":
			out[h] = fmt.Sprint(r.ContentLength)
		default:
			out[h] = strings.Join(r.Header.Values(h), ",")
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
