package localslack

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoButton: the message has no such button.
var ErrNoButton = errors.New("no such button")

// newHook issues a response_url for an interaction of user in channel (on
// the message at messageTS; "" for a command).
func (s *Server) newHook(channel, user, messageTS string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	path := fmt.Sprintf("/hooks/%s/%d/%s", TeamID, s.seq, rand.Text())
	s.hooks[path] = hook{channel: channel, user: user, messageTS: messageTS}
	return s.url + path
}

// Command sends /command text as user in channel and returns the envelope
// ID. An answer in the ack is shown to the user as Slack shows it.
func (s *Server) Command(command, user, channel, text string) (string, error) {
	payload := map[string]any{
		"token": "vtok", "team_id": s.sender(), "team_domain": "example", "channel_id": channel, "channel_name": "incident",
		"user_id": user, "user_name": user, "command": command, "text": text, "api_app_id": AppID,
		"is_enterprise_install": "false", "response_url": s.newHook(channel, user, ""), "trigger_id": s.newTrigger(user),
	}
	return s.send(envelope{typ: "slash_commands", channel: channel, user: user}, payload)
}

// Press presses the button actionID (whose value contains valueHas) on
// message m as user and returns the envelope ID; ErrNoButton if m has none.
func (s *Server) Press(user string, m Message, actionID, valueHas string) (string, error) {
	blockID, value, err := FindButton(m, actionID, valueHas)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q in message %s", err, actionID, valueHas, m.TS)
	}
	return s.Send("interactive", s.ClickPayload(user, m, actionID, blockID, value))
}

// PressValue presses the button of message m with exactly this action ID,
// block ID and value, as user; ErrNoButton if m has no such button.
func (s *Server) PressValue(user string, m Message, actionID, blockID, value string) (string, error) {
	bs, err := buttons(m)
	if err != nil {
		return "", err
	}
	for _, b := range bs {
		if b.blockID == blockID && b.actionID == actionID && b.value == value {
			return s.Send("interactive", s.ClickPayload(user, m, actionID, blockID, value))
		}
	}
	return "", fmt.Errorf("%w: %s in block %s of message %s", ErrNoButton, actionID, blockID, m.TS)
}

// ClickPayload is the block_actions payload of user pressing a button of
// message m: as from Slack, its container names the message the button
// is on (channel_id, message_ts, thread_ts when it is in a thread), with
// whatever value it is given (a stale or forged one too).
func (s *Server) ClickPayload(user string, m Message, actionID, blockID, value string) map[string]any {
	container := map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": m.Ephemeral}
	if m.ThreadTS != "" {
		container["thread_ts"] = m.ThreadTS
	}
	return map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user, "username": user, "name": user, "team_id": s.sender()},
		"api_app_id":   AppID,
		"token":        "vtok",
		"container":    container,
		"trigger_id":   s.newTrigger(user),
		"team":         map[string]any{"id": s.sender(), "domain": "example"},
		"channel":      map[string]any{"id": m.Channel, "name": "incident"},
		"message":      map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "thread_ts": m.ThreadTS},
		"state":        map[string]any{"values": map[string]any{}},
		"response_url": s.newHook(m.Channel, user, m.TS),
		"actions": []any{map[string]any{
			"action_id": actionID, "block_id": blockID, "type": "button", "value": value,
			"text": map[string]any{"type": "plain_text", "text": actionID}, "action_ts": fmt.Sprintf("%d.000001", time.Now().Unix()),
		}},
	}
}

// FindButton finds a button in a message's blocks: the first with this
// action ID whose value contains valueHas.
func FindButton(m Message, actionID, valueHas string) (blockID, value string, err error) {
	bs, err := buttons(m)
	if err != nil {
		return "", "", err
	}
	for _, b := range bs {
		if b.actionID == actionID && strings.Contains(b.value, valueHas) {
			return b.blockID, b.value, nil
		}
	}
	return "", "", ErrNoButton
}

type button struct{ blockID, actionID, value string }

// buttons lists the elements of a message's blocks.
func buttons(m Message) ([]button, error) {
	var bs []struct {
		BlockID  string `json:"block_id"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(m.Blocks, &bs); err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	var out []button
	for _, b := range bs {
		for _, e := range b.Elements {
			out = append(out, button{b.BlockID, e.ActionID, e.Value})
		}
	}
	return out, nil
}
