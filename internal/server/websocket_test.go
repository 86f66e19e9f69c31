package server

import (
	"testing"
)

// viaWebSocket reruns end-to-end tests over the WebSocket binding: while
// it is set (TestOverWebSocket, which is not parallel, so no other test
// runs meanwhile), testConfig adds a WebSocket listener and clientAddr
// makes every client connect through it.
var viaWebSocket bool

func wsTestAddr() string {
	if viaWebSocket {
		return "127.0.0.1:0"
	}
	return ""
}

// clientAddr is the address a test's clients dial: the TCP address, or
// the WebSocket URL under TestOverWebSocket.
func clientAddr(t testing.TB, s *Server) string {
	t.Helper()
	if !viaWebSocket {
		return s.Addr().String()
	}
	if s.WSAddr() == nil {
		t.Fatal("a WebSocket rerun on a server without a WebSocket listener")
	}
	return "ws://" + s.WSAddr().String() + "/chatd"
}

// TestOverWebSocket reruns a selection of the end-to-end tests with every
// client on the WebSocket binding: register, login, send, deliver, ack and
// receipts; the offline backlog on resume; kicks; auth errors; Noise XX
// and IK (and the plaintext refusal); a large backlog; and the reconnecting
// Client across a restart. The binding is a byte-stream adapter under the
// same connection type, so the same tests must pass unchanged.
func TestOverWebSocket(t *testing.T) {
	viaWebSocket = true
	defer func() { viaWebSocket = false }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"AliceToBob", TestAliceToBob},
		{"OfflineDeliveryOnLogin", TestOfflineDeliveryOnLogin},
		{"SecondLoginKicksFirst", TestSecondLoginKicksFirst},
		{"AuthErrors", TestAuthErrors},
		{"EncryptedChat", TestEncryptedChat},
		{"LargeBacklogDrains", TestLargeBacklogDrains},
		{"ClientSurvivesRestart", TestClientSurvivesRestart},
	} {
		t.Run(tc.name, tc.test)
	}
}
