package bot_test

import (
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/fakeslack"
)

func TestManifest(t *testing.T) {
	var m struct {
		DisplayInformation struct{ Name string } `yaml:"display_information"`
		Features           struct {
			BotUser struct {
				DisplayName string `yaml:"display_name"`
			} `yaml:"bot_user"`
			SlashCommands []struct {
				Command      string
				ShouldEscape bool `yaml:"should_escape"`
			} `yaml:"slash_commands"`
		}
		OAuthConfig struct {
			Scopes struct{ Bot []string }
		} `yaml:"oauth_config"`
		Settings struct {
			Interactivity struct {
				IsEnabled bool `yaml:"is_enabled"`
			}
			SocketModeEnabled bool `yaml:"socket_mode_enabled"`
		}
	}
	if err := yaml.Unmarshal([]byte(bot.Manifest("db killer", "/kill-query")), &m); err != nil {
		t.Fatal(err)
	}
	if m.DisplayInformation.Name != "db killer" || m.Features.BotUser.DisplayName != "db killer" {
		t.Errorf("name: %+v", m)
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/kill-query" {
		t.Errorf("slash commands: %+v", m.Features.SlashCommands)
	}
	if !m.Settings.SocketModeEnabled || !m.Settings.Interactivity.IsEnabled {
		t.Errorf("settings: %+v", m.Settings)
	}
	if !slices.Equal(m.OAuthConfig.Scopes.Bot, bot.Scopes) {
		t.Errorf("scopes %v, the code uses %v", m.OAuthConfig.Scopes.Bot, bot.Scopes)
	}
	// No more scopes than the bot's calls need: each one is required by a
	// method the fake Slack enforces scopes on (and every e2e test runs with
	// exactly bot.Scopes, so none is missing).
	for _, s := range bot.Scopes {
		if s != "commands" && len(fakeslack.MethodsNeeding(s)) == 0 {
			t.Errorf("scope %s is not needed by any method", s)
		}
	}
}
