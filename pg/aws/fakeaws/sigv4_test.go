package fakeaws

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The verifier against AWS's published SigV4 test suite vector
// "get-vanilla", and the same request altered.
func TestVerifyHeaderVector(t *testing.T) {
	const (
		key    = "AKIDEXAMPLE"
		secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
		auth   = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	)
	secretOf := func(k string) (string, bool) { return secret, k == key }
	req := func(mod func(*string, *string)) error {
		a, date := auth, "20150830T123600Z"
		if mod != nil {
			mod(&a, &date)
		}
		r := httptest.NewRequest("GET", "http://example.amazonaws.com/", nil)
		r.Header.Set("X-Amz-Date", date)
		r.Header.Set("Authorization", a)
		scope, err := verifyHeader(r, nil, secretOf)
		if err == nil && (scope.Region != "us-east-1" || scope.Service != "service") {
			t.Errorf("scope %+v", scope)
		}
		return err
	}
	if err := req(nil); err != nil {
		t.Fatalf("get-vanilla: %v", err)
	}
	for name, mod := range map[string]func(a, d *string){
		"other date":      func(a, d *string) { *d = "20150830T123601Z" },
		"other key":       func(a, d *string) { *a = strings.Replace(*a, "AKIDEXAMPLE/", "AKIDOTHER/", 1) },
		"other region":    func(a, d *string) { *a = strings.Replace(*a, "us-east-1", "eu-west-1", 1) },
		"bad signature":   func(a, d *string) { *a = strings.Replace(*a, "Signature=5", "Signature=6", 1) },
		"host not signed": func(a, d *string) { *a = strings.Replace(*a, "host;x-amz-date", "x-amz-date", 1) },
		"not sigv4":       func(a, d *string) { *a = "Basic dTpw" },
	} {
		if err := req(mod); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
