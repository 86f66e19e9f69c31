package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/internal/e2e/device"
	"github.com/chatd/chatd/internal/history"
)

const chatUsage = `Usage: chatd chat --user NAME [flags]

A line-based client: type a line to send it, /help for the commands.
Messages and contacts are kept in a local SQLite file (see --store), so
/history and /search work after a restart; the server keeps nothing once
a message is delivered.

Flags:
`

const chatEnv = `
Environment:
  CHATD_PASSWORD    the password (else asked for, without echo)
  CHATD_SERVER_KEY  the server's public key in hex, as --server-key
  CHATD_STORE       the local store file, as --store
  XDG_DATA_HOME     the default store is $XDG_DATA_HOME/chatd/SERVER-USER.db
  HOME              ... or ~/.local/share/chatd/SERVER-USER.db without it
Flags win over the environment.

User names are 3 to 32 of a-z 0-9 . _ - and case-sensitive; passwords
are 8 characters or more.
`

// chat is `chatd chat`: flags, the password, then the session on
// stdin/stdout.
func chat(args []string) error {
	fs, f := chatFlags(os.Stderr)
	addr, user, register, password, to, serverKey, store, plaintext := f.addr, f.user, f.register, f.password, f.to, f.serverKey, f.store, f.plaintext
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("chat: unexpected argument %q (flags only; see chatd chat -h)", fs.Arg(0))}
	}
	envDefault(password, "CHATD_PASSWORD")
	envDefault(serverKey, "CHATD_SERVER_KEY")
	envDefault(store, "CHATD_STORE")
	if *user == "" {
		return errors.New("chat: --user is required (and --register the first time)")
	}
	var pin []byte
	if *serverKey != "" {
		var err error
		if pin, err = hex.DecodeString(*serverKey); err != nil || len(pin) != 32 {
			return fmt.Errorf("chat: --server-key (or CHATD_SERVER_KEY) wants 64 hex digits")
		}
	}
	if *store == "" {
		var err error
		if *store, err = history.DefaultPath(*addr, *user); err != nil {
			return fmt.Errorf("chat: %w", err)
		}
	}
	in := bufio.NewReader(os.Stdin)
	if *password == "" {
		var err error
		if *password, err = askPassword(in, os.Stdin, os.Stderr, *register); err != nil {
			return fmt.Errorf("chat: %w", err)
		}
	}
	if err := checkPassword(*password, *register); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return runChat(chatConfig{
		Client: client.Options{Addr: *addr, Name: *user, Password: *password, Register: *register,
			ServerKey: pin, Plaintext: *plaintext},
		Store: *store, To: *to, ConnectTimeout: 30 * time.Second, NoE2E: *f.noE2E,
	}, in, os.Stdout)
}

type chatFlagValues struct {
	addr, user, password, to, serverKey, store *string
	register, plaintext, noE2E                 *bool
}

// chatFlags defines chat's flags; its usage text goes to out.
func chatFlags(out io.Writer) (*flag.FlagSet, chatFlagValues) {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(out)
	var f chatFlagValues
	f.addr = fs.String("addr", "127.0.0.1:7420", "server `address`")
	f.user = fs.String("user", "", "your user `name` (3-32 of a-z 0-9 . _ -, case-sensitive)")
	f.register = fs.Bool("register", false, "create the account if it does not exist yet")
	f.password = fs.String("password", "", "`password`, 8 characters or more (default $CHATD_PASSWORD, else asked for without echo)")
	f.to = fs.String("to", "", "`name` of the contact to talk to first")
	f.serverKey = fs.String("server-key", "", "the server's public key as `hex`, as chatd serve prints it (default $CHATD_SERVER_KEY, else trust the key it presents and show it)")
	f.store = fs.String("store", "", "local message store `file` (default $CHATD_STORE, else $XDG_DATA_HOME/chatd/SERVER-USER.db or ~/.local/share/chatd/SERVER-USER.db)")
	f.plaintext = fs.Bool("plaintext", false, "connect without encryption (only to a server run with --plaintext)")
	f.noE2E = fs.Bool("no-e2e", false, "send message bodies without end-to-end encryption, readable by the server (both sides must use it)")
	fs.Usage = func() {
		fmt.Fprint(out, chatUsage)
		fs.PrintDefaults()
		fmt.Fprint(out, chatEnv)
		fmt.Fprintf(out, "\nCommands inside the chat:\n%s", chatHelp)
	}
	return fs, f
}

// envDefault fills an unset flag from the environment.
func envDefault(v *string, key string) {
	if *v == "" {
		*v = os.Getenv(key)
	}
}

// chatConfig is one chat session's setup.
type chatConfig struct {
	Client client.Options // Addr, Name, Password, Register, ServerKey, Plaintext
	Store  string         // the local store file
	To     string         // contact to start with
	// ConnectTimeout bounds the first connection (later ones retry until
	// the session ends).
	ConnectTimeout time.Duration
	// Keepalive paces PINGs; zero means 30 s.
	Keepalive time.Duration
	// NoE2E sends message bodies as typed, readable by the server: for
	// talking to a client without end-to-end encryption, and for tests
	// that need plaintext on the server's disk.
	NoE2E bool
	// Keys sizes the prekey batches this device publishes (zero: the
	// defaults); tests make them small to run them out.
	Keys device.Config
}
