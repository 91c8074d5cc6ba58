package lobby

// KillForTest stops a clustered server the way a crash would: its NATS
// connection and every client connection drop at once, and nothing is
// said to the other nodes.
func KillForTest(s *Server) {
	s.cluster.nc.Close()
	s.http.Close()
}
