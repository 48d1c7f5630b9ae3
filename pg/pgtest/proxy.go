package pgtest

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP to a server and misbehaves on demand, as a network
// does: latency on every chunk, new connections started late, a partition
// (open connections closed, new ones refused), a blackhole (bytes held,
// connections left open).
type Proxy struct {
	l  net.Listener
	to string

	mu          sync.Mutex
	delay       time.Duration // before each chunk is forwarded
	acceptDelay time.Duration // before a new connection is forwarded
	cut         bool
	frozen      bool
	conns       []net.Conn
	wg          sync.WaitGroup
}

// NewProxy forwards a local port to to (host:port) until the test ends.
func NewProxy(tb testing.TB, to string) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{l: l, to: to}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Via is dsn with its host and port replaced by the proxy's.
func (p *Proxy) Via(tb testing.TB, dsn string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

// SetDelay delays every chunk forwarded, either way, by d.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetAcceptDelay holds each new connection for d before it is forwarded: a
// server that accepts connections and starts sessions late.
func (p *Proxy) SetAcceptDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acceptDelay = d
}

// Partition closes every open connection and refuses new ones while cut.
func (p *Proxy) Partition(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		p.closeConns()
	}
}

// Freeze holds every byte while frozen, leaving the connections open: the
// peers hear nothing until TCP or their own deadlines give up.
func (p *Proxy) Freeze(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	_ = p.l.Close()
	p.mu.Lock()
	p.frozen = false
	p.closeConns()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) closeConns() {
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.mu.Lock()
			wait := p.acceptDelay
			p.mu.Unlock()
			time.Sleep(wait)
			p.connect(c)
		}()
	}
}

// connect forwards c to the server, unless the proxy is cut.
func (p *Proxy) connect(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		_ = c.Close()
		return
	}
	up, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = c.Close()
		return
	}
	p.conns = append(p.conns, c, up)
	p.wg.Add(2)
	go p.pipe(up, c)
	go p.pipe(c, up)
}

// pipe copies src to dst, each chunk after the delay and while not frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				p.mu.Lock()
				frozen, d := p.frozen, p.delay
				p.mu.Unlock()
				if !frozen {
					time.Sleep(d)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
