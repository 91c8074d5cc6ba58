package lobby

// CrashForTest stops a server the way a crash looks to its clients: the
// listener and every connection close at once, mid-stream, and nothing is
// said to anyone. (Shut it down afterwards to release the rest.)
func CrashForTest(s *Server) {
	s.http.Close()
}
