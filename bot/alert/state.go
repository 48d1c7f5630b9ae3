package alert

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// alertKey names one alert: a statement execution (or an idle transaction)
// on one server. The same session idle after its query is a different alert.
// It is a string so that keys read back from the state store compare equal.
func alertKey(b pg.Backend) string {
	state := "active"
	if b.State.Idle() {
		state = "idle"
	}
	return strings.Join([]string{b.Target, strconv.Itoa(int(b.PID)), b.BackendStart.UTC().Format(time.RFC3339Nano),
		b.QueryStart.UTC().Format(time.RFC3339Nano), b.ServerStart.UTC().Format(time.RFC3339Nano), state}, "|")
}

// downKey names a target's outage in the state store: a replica that takes
// the target over knows it was reported down, and does not say it again.
func downKey(target string) string { return "down|" + target }

// alertDoc is an alert as the state store keeps it; with Down, a target's
// outage instead: since when, and whether its notice went out (Said).
type alertDoc struct {
	Down            bool `json:",omitempty"`
	Said            bool `json:",omitempty"`
	Backend         pg.Backend
	BackendDuration time.Duration
	TS              string
	Since           time.Time
	SummaryTS       string
	SummaryTotal    int
}

// load starts a target's alert state, with the alerts an earlier run (or
// another replica) posted and that are still open. It returns nil when the
// state store cannot say: polling without them would alert again.
func (w *Watcher) load(ctx context.Context, target string) *alertsFor {
	st := &alertsFor{target: target, alerts: map[string]*alert{}}
	if w.store == nil {
		return st
	}
	docs, err := w.store.Alerts(ctx, target)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("could not load alerts from the state store; polling waits for them", slog.String("target", target), slog.String("error", err.Error()))
		}
		return nil
	}
	summaries := map[string]*summary{}
	for k, raw := range docs {
		if k == downKey(target) {
			var d alertDoc
			if json.Unmarshal(raw, &d) == nil {
				st.down, st.downSince, st.downSaid = true, d.Since, d.Said
			}
			continue
		}
		a, ok := decodeAlert(raw)
		if !ok {
			continue
		}
		if a.summary != nil {
			s, ok := summaries[a.summary.ts]
			if !ok {
				s = a.summary
				summaries[s.ts] = s
			}
			s.open++
			a.summary = s
		}
		st.alerts[k] = a
	}
	if len(docs) > 0 {
		w.log.Info("open alerts taken back", slog.String("target", target), slog.Int("alerts", len(docs)))
	}
	return st
}

// adopt reads again the stored alerts this replica did not post and whose
// post Slack had not confirmed when they were read: the replica that posted
// them (one that handed the target over, or died) records the ts when Slack
// has it, and this replica needs it to edit and resolve them in place.
func (w *Watcher) adopt(ctx context.Context, st *alertsFor) {
	if w.store == nil {
		return
	}
	var waiting bool
	w.mu.Lock()
	for _, a := range st.alerts {
		waiting = waiting || a.summary == nil && !a.queued && a.ts == ""
	}
	w.mu.Unlock()
	if !waiting {
		return
	}
	docs, err := w.store.Alerts(ctx, st.target)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, a := range st.alerts {
		if a.summary != nil || a.queued || a.ts != "" {
			continue
		}
		if d, ok := decodeAlert(docs[k]); ok && d.ts != "" {
			a.ts = d.ts
		}
	}
}

// unconfirmed says whether a's post, made by another replica, has not been
// confirmed yet and may still be: its resolution waits for the ts, up to
// orphanAfter.
func (w *Watcher) unconfirmed(a *alert, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return a.summary == nil && !a.queued && a.ts == "" && now.Sub(a.since) <= w.orphanAfter()
}

func decodeAlert(raw []byte) (*alert, bool) {
	var d alertDoc
	if json.Unmarshal(raw, &d) != nil || d.Down {
		return nil, false
	}
	d.Backend.Duration = d.BackendDuration
	a := &alert{backend: d.Backend, ts: d.TS, since: d.Since, lastEdit: d.Since, lastShown: blockingState(d.Backend)}
	if d.SummaryTS != "" {
		a.summary = &summary{key: "summary|" + d.SummaryTS, ts: d.SummaryTS, total: d.SummaryTotal, since: d.Since}
	}
	return a, true
}

// encodeAlert makes a's document with the ts given (the caller reads a.ts
// under watcher.mu when it is to be kept).
func encodeAlert(a *alert, ts string) []byte {
	d := alertDoc{Backend: a.backend, BackendDuration: a.backend.Duration, TS: ts, Since: a.since}
	if a.summary != nil {
		d.SummaryTotal = a.summary.total
	}
	raw, _ := json.Marshal(d)
	return raw
}

// withTS sets the ts (and the summary's) of an encoded alert document.
func withTS(raw []byte, ts, summaryTS string) []byte {
	var d alertDoc
	if json.Unmarshal(raw, &d) != nil {
		return raw
	}
	d.TS, d.SummaryTS = ts, summaryTS
	out, _ := json.Marshal(d)
	return out
}

// claim keeps the fresh queries this process is to alert about: with a
// state store, a query another process (or an earlier run) already claimed
// is taken over as it was posted instead of being posted again.
func (w *Watcher) claim(ctx context.Context, st *alertsFor, fresh []pg.Backend, now time.Time) []pg.Backend {
	if w.store == nil {
		return fresh
	}
	var mine []pg.Backend
	for _, b := range fresh {
		k := alertKey(b)
		claimed, stored, err := w.store.ClaimAlert(ctx, st.target, k, encodeAlert(&alert{backend: b, since: now}, ""))
		if err != nil {
			// Not posted: another replica may hold the target by now and post
			// it; if not, the next poll claims it again.
			w.log.Error("could not claim an alert in the state store; the next poll tries again", slog.String("target", st.target), slog.String("error", err.Error()))
			continue
		}
		if claimed {
			mine = append(mine, b)
			continue
		}
		a, ok := decodeAlert(stored)
		if ok && a.ts == "" && now.Sub(a.since) > w.orphanAfter() {
			// Claimed but never posted (that process died): post it now.
			mine = append(mine, b)
			continue
		}
		if ok {
			a.backend = b
			st.alerts[k] = a
		}
	}
	return mine
}

// recordDown records target's outage in the state store (said: its notice
// went out). It reports whether this replica is to announce it: not when
// the store says it was announced already (by another replica, or an
// earlier run). Without a state store, or when it cannot say, yes.
func (w *Watcher) recordDown(ctx context.Context, target string, since time.Time, said bool) bool {
	if w.store == nil {
		return true
	}
	raw, _ := json.Marshal(alertDoc{Down: true, Since: since, Said: said})
	if said {
		_ = w.store.PutAlert(ctx, target, downKey(target), raw)
		return true
	}
	claimed, stored, err := w.store.ClaimAlert(ctx, target, downKey(target), raw)
	if err != nil || claimed {
		return true
	}
	var d alertDoc
	return json.Unmarshal(stored, &d) != nil || !d.Said
}

// saveDoc records a posted alert (its ts) in the state store; it is called
// from the outbox's goroutine, so it bounds its own time.
func (w *Watcher) saveDoc(target, key string, doc []byte) {
	if w.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.work, w.cfg.QueryTimeout)
	defer cancel()
	if err := w.store.PutAlert(ctx, target, key, doc); err != nil {
		w.log.Error("could not save an alert in the state store", slog.String("target", target), slog.String("error", err.Error()))
	}
}

// forget drops a resolved alert from the state store.
func (w *Watcher) forget(ctx context.Context, key string) {
	if w.store == nil {
		return
	}
	if err := w.store.DeleteAlert(ctx, key); err != nil {
		w.log.Error("could not delete an alert from the state store", slog.String("error", err.Error()))
	}
}
