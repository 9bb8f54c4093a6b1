package relay

import (
	"bytes"
	"io"
	"testing"
)

// FuzzRelayPassesBytes: whatever the two peers send, in whatever chunks
// and order, each receives exactly what the other sent, and the relay
// ends when both have closed their sending side. The script's first byte
// picks TLS on both legs; each following byte is a write of (b>>1)*61+1
// bytes by the client (b even) or the server (b odd).
// SPEC: G13
func FuzzRelayPassesBytes(f *testing.F) {
	f.Add([]byte{0, 2, 3, 4, 5})
	f.Add([]byte{1, 255, 254, 0, 1})
	f.Add([]byte{0})
	f.Add([]byte{1, 200, 200, 200, 200, 201, 201})
	ls, err := Start(1)
	if err != nil {
		f.Fatal(err)
	}
	defer ls.Stop()
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) == 0 || len(script) > 64 {
			return
		}
		s := newSession(t, script[0]&1 == 1)
		s.relay(t, ls, nil)
		var sent [2]bytes.Buffer
		got := [2]chan []byte{make(chan []byte, 1), make(chan []byte, 1)}
		// The server reads what the client sent, the client what the server sent.
		go func() { b, _ := io.ReadAll(s.server); got[0] <- b }()
		go func() { b, _ := io.ReadAll(s.client); got[1] <- b }()
		for i, b := range script[1:] {
			chunk := bytes.Repeat([]byte{byte(i)}, int(b>>1)*61+1)
			from := s.client
			if b&1 == 1 {
				from = s.server
			}
			if _, err := from.Write(chunk); err != nil {
				t.Fatal(err)
			}
			sent[b&1].Write(chunk)
		}
		closeWrite(t, s.client)
		closeWrite(t, s.server)
		for dir := range 2 {
			if b := <-got[dir]; !bytes.Equal(b, sent[dir].Bytes()) {
				t.Fatalf("direction %d: received %d bytes, sent %d, or different ones", dir, len(b), sent[dir].Len())
			}
		}
		if r := s.result(t); r.Err != nil || r.Bytes[0] != int64(sent[0].Len()) || r.Bytes[1] != int64(sent[1].Len()) {
			t.Fatalf("relay ended with %+v, want no error and %d, %d bytes", r, sent[0].Len(), sent[1].Len())
		}
		s.front.Close()
		s.back.Close()
	})
}
