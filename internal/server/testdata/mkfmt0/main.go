// mkfmt0 writes a few users and messages into a running chatd (the
// format 0 server of this older commit) and prints the tokens.
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
	for _, name := range []string{"alice", "bob", "carol"} {
		c, err := client.Dial(ctx, addr)
		if err != nil {
			log.Fatal(err)
		}
		w, err := c.Register(ctx, name, "password-"+name)
		if err != nil {
			log.Fatal(err)
		}
		conns[name], ids[name] = c, w.User
		fmt.Printf("token %s %d %s\n", name, w.User, hex.EncodeToString(w.Token[:]))
	}
	conns["bob"].Close() // offline: what follows waits in bob's inbox
	g, err := conns["alice"].CreateGroup(ctx, "team", ids["bob"], ids["carol"])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("group team %d\n", g.Group)
	sent := func(c *client.Conn) {
		for {
			select {
			case f := <-c.Events():
				switch f := f.(type) {
				case *codec.Sent:
					return
				case *codec.Error:
					log.Fatalf("error %v", f.Code)
				case *codec.GroupEvent:
					c.Ack(f.Seq, true)
				}
			case <-ctx.Done():
				log.Fatal("no SENT")
			}
		}
	}
	for _, m := range []struct{ from, body string }{
		{"alice", "hello bob 1"}, {"alice", "hello bob 2"}, {"carol", "from carol"},
	} {
		c := conns[m.from]
		c.Send(ids["bob"], []byte(m.body), true)
		sent(c)
	}
	conns["alice"].SendID(client.NewID(), codec.FlagGroup, g.Group, []byte("hello team"), true)
	sent(conns["alice"])
	for _, c := range conns {
		c.Close()
	}
}
