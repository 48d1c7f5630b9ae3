package redact

import "testing"

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
				SQL(q)
			}
		})
	}
}

// BenchmarkLibpgQuery is the other candidate measured: the same redaction
// on the tokens of PostgreSQL's own scanner (libpg_query through wazero,
// the differential tests' oracle) instead of scan's. Its module compiles
// on the first call, outside the timing.
func BenchmarkLibpgQuery(b *testing.B) {
	pgScan(b, "SELECT 1")
	for _, c := range []struct {
		name string
		size int
	}{{"2kB", 2 << 10}, {"64kB", 64 << 10}} {
		q := longQuery(c.size)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(q)))
			for b.Loop() {
				toks, pos := pgScan(b, q)
				var err *scanError
				if pos != -1 {
					err = &scanError{pos: pos}
				}
				render(q, toks, mark(q, toks, 0), err)
			}
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	q := longQuery(2 << 10)
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(q)
	}
}
