// mkfmt2 writes a few users, sessions and a message into a running chatd
// of format 2 (with its token index) and prints the tokens.
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

func main() {
	addr := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := map[string]*client.Conn{}
	ids := map[string]uint64{}
	toks := map[string]codec.Token{}
	for _, name := range []string{"alice", "bob", "carol"} {
		c, err := client.Dial(ctx, addr)
		if err != nil {
			log.Fatal(err)
		}
		w, err := c.Register(ctx, name, "password-"+name)
		if err != nil {
			log.Fatal(err)
		}
		conns[name], ids[name], toks[name] = c, w.User, w.Token
		fmt.Printf("token %s %d %s\n", name, w.User, hex.EncodeToString(w.Token[:]))
	}
	// alice reconnects once: her first token is rotated out (in its
	// grace) and a second one is current.
	conns["alice"].Close()
	a, err := client.Dial(ctx, addr)
	if err != nil {
		log.Fatal(err)
	}
	w, err := a.Resume(ctx, toks["alice"])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("token alice-resumed %d %s\n", w.User, hex.EncodeToString(w.Token[:]))
	conns["alice"] = a
	conns["bob"].Close() // offline: carol's message waits in bob's inbox
	c := conns["carol"]
	c.Send(ids["bob"], []byte("from carol"), true)
	for {
		select {
		case f := <-c.Events():
			switch f := f.(type) {
			case *codec.Sent:
				for _, c := range conns {
					c.Close()
				}
				return
			case *codec.Error:
				log.Fatalf("error %v", f.Code)
			}
		case <-ctx.Done():
			log.Fatal("no SENT")
		}
	}
}
