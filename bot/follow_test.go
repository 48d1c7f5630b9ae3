package bot_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// The watcher follows the fleet as it changes at run time (Fleet.Set, as
// RDS discovery does): a target added is polled and alerted, a target
// removed is dropped — its lease handed back when there is a state store.
// Each target's role sees only its own sessions' state, so only its own
// runaway queries are alerted.
func TestAlertsFollowTheFleet(t *testing.T) {
	for _, withStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", withStore), func(t *testing.T) {
			dsn := map[string]string{"fa": pgtest.Role(t, "follow_a"), "fb": pgtest.Role(t, "follow_b")}
			fake := fakeslack.New(t)
			fake.Grant(bot.Scopes...)
			logs := &syncBuffer{}
			cfg := config.Config{
				AppToken: fakeslack.AppToken, BotToken: fakeslack.BotToken, APIURL: fake.APIURL(),
				Approvers: []string{approver}, ApprovalTTL: time.Minute, Command: "/pgkill",
				MinDuration: time.Minute, VerifyTimeout: 5 * time.Second, ConnectTimeout: time.Second,
				Protect: "user=rdsadmin", LogFormat: "json", LogLevel: "info", Reason: "off",
				AlertChannel: alertChannel, AlertAfter: 400 * time.Millisecond, PollInterval: 200 * time.Millisecond,
				AlertEditEvery: time.Hour, AlertMaxPerPoll: 5, Replica: "follower",
			}
			fleet, err := pg.NewFleet([]pg.TargetSpec{{Name: "fa", DSN: dsn["fa"]}}, pg.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer fleet.Close()
			var store bot.Store
			var stateDSN string
			if withStore {
				stateDSN = pgtest.Database(t, "state_follow")
				cfg.StateDSN = stateDSN
				s, err := pg.OpenStore(context.Background(), stateDSN)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				store = s
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- bot.Serve(ctx, cfg, fleet, store, logs) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
				if t.Failed() {
					t.Logf("logs:\n%s", logs.String())
				}
			}()

			q := pgtest.NewSession(t, dsn["fb"], "follow_runaway")
			q.Run("SELECT pg_sleep(600)")
			if _, err := fleet.Set([]pg.TargetSpec{{Name: "fa", DSN: dsn["fa"]}, {Name: "fb", DSN: dsn["fb"]}}); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("on fb: pid %d for ", q.PID)
			fake.Eventually(t, 30*time.Second, "the alert on the added target", func() bool {
				return len(fake.Messages(func(m fakeslack.Message) bool { return strings.Contains(m.Text, want) })) == 1
			})
			if _, err := fleet.Set([]pg.TargetSpec{{Name: "fa", DSN: dsn["fa"]}}); err != nil {
				t.Fatal(err)
			}
			fake.Eventually(t, 30*time.Second, "the removed target dropped", func() bool {
				for _, r := range logs.records("polling stopped") {
					if r["target"] == "fb" {
						return !withStore || leaseRows(t, stateDSN, "fb") == 0
					}
				}
				return false
			})
		})
	}
}

func leaseRows(t *testing.T, dsn, target string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgkill_lease WHERE target = $1 AND holder <> ''", target).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
