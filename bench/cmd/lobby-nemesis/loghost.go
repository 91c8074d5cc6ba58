package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// logStream is the JetStream stream of the lobby's event log
// (natscluster's streamName for the lobby's prefix).
const logStream = "SFERE_LOBBY_EVENTS"

// logHost is the target of a fault aimed at the NATS server that leads the
// lobby's event log, whichever that is when the fault starts.
const logHost = "log-host"

// jsz is the part of a NATS server's /jsz answer that names the streams it
// holds and their leaders.
type jsz struct {
	Accounts []struct {
		Streams []struct {
			Name    string `json:"name"`
			Cluster struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// logLeader returns the NATS server that leads the event log's stream, or
// nil if none answers so.
func (c *cluster) logLeader(ctx context.Context) *natsServer {
	client := &http.Client{Timeout: 2 * time.Second}
	for _, s := range c.nats {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort(s.monitor)+"/jsz?accounts=true&streams=true", nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var j jsz
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, a := range j.Accounts {
			for _, st := range a.Streams {
				if st.Name == logStream && st.Cluster.Leader == s.name {
					return s
				}
			}
		}
	}
	return nil
}
