package natspresence_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
)

// Two nodes share a room: each is a natscluster node (which decides which
// nodes are there) with a tracker over its hub, and natspresence adapts
// the node to the tracker's cluster. A name claimed through one node is
// taken through the other.
func ExampleNew() {
	ns, err := natscluster.StartServer("127.0.0.1:0", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ns.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var trackers []*presence.Tracker
	for _, id := range []string{"a", "b"} {
		nc, err := nats.Connect(ns.ClientURL(), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer nc.Close()
		node, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{
			NodeID: id, Interval: 100 * time.Millisecond,
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer node.Close() // after the tracker and the hub
		cl, err := natspresence.New(ctx, node, "lobby", natspresence.Options{})
		if err != nil {
			fmt.Println(err)
			return
		}
		tr, err := presence.New(node.Hub(), presence.Options{Room: "lobby", Cluster: cl,
			Snapshot: func([]presence.Member) []sfere.Effect { return nil },
			Diff:     func(presence.Diff) []sfere.Effect { return nil },
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer node.Hub().Shutdown(context.Background())
		defer tr.Close()
		trackers = append(trackers, tr)
	}
	// Claims wait until the node has heard the others (natscluster.Node.Warm).
	if _, err := trackers[0].Claim(ctx, presence.Claim{Person: "brian", Owner: "session-1"}); err != nil {
		fmt.Println(err)
		return
	}
	_, err = trackers[1].Claim(ctx, presence.Claim{Person: "brian", Owner: "session-2"})
	fmt.Println("brian through b:", errors.Is(err, presence.ErrTaken))
	// Output: brian through b: true
}
