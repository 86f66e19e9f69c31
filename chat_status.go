package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// status is the client's OnStatus hook: every wait is said, so that a
// server down, at capacity or restarting never looks like a hang.
func (s *session) status(st client.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st.State {
	case client.StateConnecting:
		if st.Attempt == 1 && !s.lost {
			s.out.say("connecting to %s...", s.cfg.Client.Addr)
		}
	case client.StateConnected:
		s.lost = false
		s.out.say("connected")
		if s.e2e != nil {
			poke(s.e2e.wake) // seal what waited for the connection
		}
	case client.StateWaiting:
		wait := seconds(st.Wait)
		var line string
		switch {
		case errors.Is(st.Err, context.Canceled):
			return // closing
		case st.Busy && restarting(st.Err) && s.self != 0 && !s.lost:
			line = fmt.Sprintf("connection lost (server restarting); reconnecting in %s", wait)
		case st.Busy:
			line = fmt.Sprintf("server busy (%s), retrying in %s", busyReason(st.Err), wait)
		case s.self != 0 && !s.lost:
			line = fmt.Sprintf("connection lost (%s); reconnecting in %s", shortErr(st.Err), wait)
		default:
			line = fmt.Sprintf("cannot reach %s (%s); reconnecting in %s", s.cfg.Client.Addr, shortErr(st.Err), wait)
		}
		s.lost = s.self != 0
		s.out.say("%s", line)
	}
}

// seconds renders a wait like "2.3 s".
func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func restarting(err error) bool {
	var g *client.GoawayError
	var e *codec.Error
	return errors.As(err, &g) && g.Reason == codec.GoawayShutdown || errors.As(err, &e) && e.Code == codec.CodeShuttingDown
}

func busyReason(err error) string {
	var g *client.GoawayError
	if errors.As(err, &g) {
		switch g.Reason {
		case codec.GoawayCapacity:
			return "at capacity"
		case codec.GoawayOverloaded:
			return "overloaded"
		case codec.GoawayShutdown:
			return "restarting"
		}
		return g.Reason.String()
	}
	var e *codec.Error
	if errors.As(err, &e) {
		switch e.Code {
		case codec.CodeTooManyLogins:
			return "too many login attempts"
		case codec.CodeShuttingDown:
			return "restarting"
		}
	}
	return shortErr(err)
}

// shortErr drops the package prefixes wrapped errors accumulate.
func shortErr(err error) string {
	if err == nil {
		return "no reason given"
	}
	msg := err.Error()
	for _, p := range []string{"client: ", "connection ended: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	if i := strings.LastIndex(msg, "connect: "); i >= 0 {
		msg = msg[i+len("connect: "):] // "dial tcp ...: connect: connection refused"
	}
	return msg
}

// explainLogin turns a refused first connection into what to do next.
func explainLogin(err error, cfg chatConfig) error {
	name, addr := cfg.Client.Name, cfg.Client.Addr
	var e *codec.Error
	if errors.As(err, &e) {
		switch e.Code {
		case codec.CodeUnknownUser:
			return fmt.Errorf("chat: no user %q on %s%s; to create the account, add --register", name, addr, caseHint(name))
		case codec.CodeWrongPassword:
			return fmt.Errorf("chat: wrong password for %s", name)
		case codec.CodeNameTaken:
			return fmt.Errorf("chat: the name %q is taken on %s (with another password): pick another name, or drop --register if it is yours and check the password", name, addr)
		case codec.CodeInvalidName:
			return fmt.Errorf("chat: %q is not a valid user name: 3 to 32 of a-z 0-9 . _ -, starting with a letter or digit (names are case-sensitive and lower case)", name)
		case codec.CodeInvalidPassword:
			return fmt.Errorf("chat: %w", errPasswordRule)
		case codec.CodeKeyRetired:
			return fmt.Errorf("chat: %s no longer uses the key you pinned, and this chat did not hear of its new key while the old one was valid: ask its operator for the server's key (chatd serve prints it) and pass it with --server-key", addr)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("chat: could not connect to %s within %v: %s", addr, cfg.ConnectTimeout, shortErr(err))
	}
	return fmt.Errorf("chat: %w", err)
}

// explainSendError says why a message was refused for good.
func explainSendError(e *codec.Error) string {
	switch e.Code {
	case codec.CodeInboxFull:
		return "their inbox is full"
	case codec.CodeBodyTooLarge:
		return "too long for this server"
	case codec.CodeUnknownRecipient:
		return "no such user"
	case codec.CodeNotMember:
		return "you are not a member of that group"
	case codec.CodeUnknownGroup:
		return "no such group"
	case codec.CodeYouBlocked:
		return "you blocked them; /unblock them first"
	}
	return e.Error()
}
