package bot

import (
	"fmt"
	"strconv"
	"strings"
)

// Scopes are the bot token scopes pgkill uses, and no more:
//   - commands: the slash command;
//   - chat:write: chat.postMessage (listings, approval cards, alerts, audit)
//     and chat.update (cards and alerts edited in place);
//   - usergroups:read: usergroups.users.list, for approvers and requesters
//     given as user groups.
//
// Replies through response_url need no scope. Socket Mode itself needs an
// app-level token with connections:write, which is not a bot scope.
var Scopes = []string{"commands", "chat:write", "usergroups:read"}

// Manifest is the Slack app manifest (YAML, as "Create app from manifest"
// takes it) for an app called name with the slash command command.
func Manifest(name, command string) string {
	var sb strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&sb, `display_information:
  name: %s
  description: Find long-running PostgreSQL queries and end them safely, with an approver.
  background_color: "#336791"
features:
  bot_user:
    display_name: %s
    always_online: true
  slash_commands:
    - command: %s
      description: List long-running PostgreSQL queries; cancel or terminate them with approval
      usage_hint: %s
      should_escape: false
oauth_config:
  scopes:
    bot:
`, q(name), q(name), q(command), q("[TARGET…] [DURATION] [db=…] [user=…] [app=…] [state=…] [limit=N] | help | targets | doctor"))
	for _, s := range Scopes {
		fmt.Fprintf(&sb, "      - %s\n", s)
	}
	sb.WriteString(`settings:
  interactivity:
    is_enabled: true
  org_deploy_enabled: false
  socket_mode_enabled: true
  token_rotation_enabled: false
`)
	return sb.String()
}
