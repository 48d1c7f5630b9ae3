package redact_test

import (
	"testing"

	"github.com/DataDog/go-sqllexer"

	"github.com/pgkill/pgkill/bot/redact"
)

// BenchmarkSQL redacts queries of the default track_activity_query_size
// (1 kB) doubled and of its largest useful size: a listing redacts each
// backend's text once.
func BenchmarkSQL(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"2kB", 2 << 10}, {"64kB", 64 << 10}} {
		q := longQuery(c.size)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(q)))
			for b.Loop() {
				redact.SQL(q)
			}
		})
	}
}

// BenchmarkObfuscate is the baseline: the library's own obfuscator on the
// same text, so the cost of redact's safety pass can be read off.
func BenchmarkObfuscate(b *testing.B) {
	o := sqllexer.NewObfuscator()
	for _, c := range []struct {
		name string
		size int
	}{{"2kB", 2 << 10}, {"64kB", 64 << 10}} {
		q := longQuery(c.size)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.Obfuscate(q, sqllexer.WithDBMS(sqllexer.DBMSPostgres))
			}
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	q := longQuery(2 << 10)
	b.ReportAllocs()
	for b.Loop() {
		redact.Fingerprint(q)
	}
}
