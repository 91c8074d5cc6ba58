package lobby

// KillForTest stops a clustered server the way a crash would: its NATS
// connection and every client connection drop at once, and nothing is
// said to the other nodes. A NATS server embedded in it dies with it
// (and, having no store directory, loses the shared state).
func KillForTest(s *Server) {
	s.cluster.nc.Close()
	s.http.Close()
	if s.cluster.embedded != nil {
		s.cluster.embedded.Shutdown()
		s.cluster.embedded = nil
	}
}
