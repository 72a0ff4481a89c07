package netmux

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

func listen(t *testing.T) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(ln, nil)
	t.Cleanup(func() { m.Close() })
	return m
}

func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			ch <- c
		}
		close(ch)
	}()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection routed")
	}
	return nil
}

func TestRoutesByFirstByte(t *testing.T) {
	m := listen(t)
	// A Kafka frame: the size prefix's first byte is 0.
	kc, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	frame := []byte{0, 0, 0, 3, 'a', 'b', 'c'}
	kc.Write(frame)
	got := accept(t, m.Kafka())
	if _, ok := got.(*net.TCPConn); !ok {
		t.Fatalf("kafka connection is %T, want *net.TCPConn (sendfile needs it)", got)
	}
	buf := make([]byte, len(frame))
	if _, err := io.ReadFull(got, buf); err != nil || string(buf) != string(frame) {
		t.Fatalf("kafka route read %q, %v; want the whole frame, first byte included", buf, err)
	}

	rc, err := DialRaft(m.Addr().String(), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.Write([]byte("hello\n"))
	gotRaft := accept(t, m.Raft())
	line, err := bufio.NewReader(gotRaft).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("raft route read %q, %v; want the bytes after the prefix", line, err)
	}
}

func TestSilentConnectionDoesNotBlockOthers(t *testing.T) {
	m := listen(t)
	silent, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	kc, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kc.Write([]byte{0, 0, 0, 0})
	accept(t, m.Kafka())
}

func TestCloseEndsAccept(t *testing.T) {
	m := listen(t)
	errs := make(chan error, 2)
	for _, ln := range []net.Listener{m.Kafka(), m.Raft()} {
		go func() { _, err := ln.Accept(); errs <- err }()
	}
	m.Close()
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("Accept after Close returned a connection")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	}
}
