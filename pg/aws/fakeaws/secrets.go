package fakeaws

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Secret is one Secrets Manager secret.
type Secret struct {
	ARN, Name string
	Value     string // SecretString, usually JSON
	version   int
}

// PutSecret creates a secret in region, or replaces its value (a rotation:
// a new version becomes AWSCURRENT). It returns the ARN.
func (s *Server) PutSecret(region, name, value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	arn := fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-AbCdEf", region, name)
	sec, ok := s.secrets[arn]
	if !ok {
		sec = &Secret{ARN: arn, Name: name}
		s.secrets[arn] = sec
		s.secrets[region+"/"+name] = sec
	}
	sec.Value = value
	sec.version++
	return arn
}

func (s *Server) secretsManager(w http.ResponseWriter, r *http.Request, region, target string, body []byte) {
	action, ok := strings.CutPrefix(target, "secretsmanager.")
	s.record(r, "secretsmanager", region, action)
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		s.tb.Errorf("fakeaws: Secrets Manager content type %q", ct)
	}
	if !ok || action != "GetSecretValue" {
		s.tb.Errorf("fakeaws: unexpected Secrets Manager target %q", target)
		jsonError(w, 400, "InvalidRequestException", "unsupported operation")
		return
	}
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionStage string `json:"VersionStage"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.SecretID == "" {
		jsonError(w, 400, "InvalidParameterException", "SecretId is required")
		return
	}
	s.mu.Lock()
	sec, ok := s.secrets[in.SecretID]
	if !ok {
		sec, ok = s.secrets[region+"/"+in.SecretID]
	}
	var out map[string]any
	if ok && strings.Contains(sec.ARN, ":"+region+":") {
		out = map[string]any{
			"ARN": sec.ARN, "Name": sec.Name, "SecretString": sec.Value,
			"VersionId":     fmt.Sprintf("00000000-0000-4000-8000-%012d", sec.version),
			"VersionStages": []string{"AWSCURRENT"},
			"CreatedDate":   float64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix()),
		}
	}
	s.mu.Unlock()
	if out == nil {
		jsonError(w, 400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "Message": msg})
}
