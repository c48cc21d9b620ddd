package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"time"
)

// directGetter GETs paths of one HTTP server over one keep-alive HTTP/1.1
// connection, writing each request and reading its response (with
// net/http's parser) in the calling goroutine. net/http's Transport hands
// every request to a writer goroutine and every response back from a
// reader goroutine of its own: on this kind of machine those two wake-ups
// cost about as much as the whole round trip of a NATS KV Get, so a read
// measured through it says more about the client than about the server.
// directGetter is the client a caller that wants fast reads would use (a
// keep-alive connection, nothing between it and the socket): what the
// server's side of a read costs shows. It redials after any error or a
// response that closes the connection. It is not safe for concurrent use.
type directGetter struct {
	addr    string        // host:port
	timeout time.Duration // deadline of each round trip
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
}

// newDirectGetter returns a getter of the server at addr (host:port) whose
// round trips each end within timeout.
func newDirectGetter(addr string, timeout time.Duration) *directGetter {
	return &directGetter{addr: addr, timeout: timeout}
}

// get sends GET path and reads the answer's body into body (reset first).
// It returns the answer's status code.
func (g *directGetter) get(path string, body *bytes.Buffer) (status int, err error) {
	if g.conn == nil {
		c, err := net.DialTimeout("tcp", g.addr, g.timeout)
		if err != nil {
			return 0, fmt.Errorf("dial %s: %w", g.addr, err)
		}
		g.conn, g.br, g.bw = c, bufio.NewReader(c), bufio.NewWriter(c)
	}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if err := g.conn.SetDeadline(time.Now().Add(g.timeout)); err != nil {
		return 0, err
	}
	g.bw.WriteString("GET ")
	g.bw.WriteString(path)
	g.bw.WriteString(" HTTP/1.1\r\nHost: ")
	g.bw.WriteString(g.addr)
	g.bw.WriteString("\r\n\r\n")
	if err := g.bw.Flush(); err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := http.ReadResponse(g.br, nil)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	body.Reset()
	_, err = body.ReadFrom(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("GET %s: body: %w", path, err)
	}
	if resp.Close {
		g.close()
	}
	return resp.StatusCode, nil
}

// close closes the connection; the next get dials again.
func (g *directGetter) close() {
	if g.conn != nil {
		_ = g.conn.Close()
		g.conn, g.br, g.bw = nil, nil, nil
	}
}
