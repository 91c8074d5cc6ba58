package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// nginxProc writes nginx's configuration into the campaign's directory and
// returns the process that serves it: the load balancer in front of the
// lobby nodes, as a deployment would have it: streams unbuffered, a
// request that cannot reach one node passed to the next.
func (c *cluster) nginxProc(port int) (*proc, error) {
	dir := filepath.Join(c.dir, "nginx")
	// nginx's workers run as nobody: they must reach their temp dirs.
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return nil, fmt.Errorf("nginx: %w", err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return nil, fmt.Errorf("nginx: %w", err)
		}
	}
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	var up strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&up, "    server %s max_fails=1 fail_timeout=2s;\n", hostPort(n.port))
	}
	tmp := filepath.Join(dir, "tmp")
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream lobby {
%[3]s    keepalive 32;
  }
  server {
    listen 127.0.0.1:%[4]d;
    location / {
      proxy_pass http://lobby;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_connect_timeout 2s;
      send_timeout 10s;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 3;
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`, dir, tmp, up.String(), port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return &proc{name: "nginx", bin: "nginx", args: []string{"-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")},
		logPath: filepath.Join(c.dir, "nginx.log"), ready: httpReady(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))}, nil
}
