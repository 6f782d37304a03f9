package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// NginxServer is an nginx of the calling test's own.
type NginxServer struct {
	// Addr is "127.0.0.1:PORT", where the configuration's {{listen}} is.
	Addr string
	// Stop stops the server now; it runs at the end of the test too, and a
	// second call does nothing.
	Stop func()
}

// NginxListen is what Nginx replaces with the server's address in the
// configuration it is given.
const NginxListen = "{{listen}}"

// Nginx starts nginx for the calling test with httpConf as the body of its
// http block (upstream and server blocks, as an operator writes them in
// /etc/nginx/sites-enabled), NginxListen in it replaced by a free port on
// 127.0.0.1, and stops it when the test ends. It runs in the foreground as
// the server user, one worker, its temporary files, pid file and logs in
// this test binary's directory. Nginx returns once the port takes
// connections. Without nginx the test skips (fails on CI).
func Nginx(t testing.TB, httpConf string) NginxServer {
	t.Helper()
	requireMain(t)
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/nginx"); statErr != nil {
			unavailable(t, fmt.Errorf("testenv: nginx %w: no nginx in PATH; run .ci/run or apt-get install nginx", errNotInstalled))
			return NginxServer{}
		}
		bin = "/usr/sbin/nginx"
	}
	s, p, err := startNginx(bin, httpConf)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop = stopWithTest(t, p, stopGracefully)
	return s
}

var nginxSeq atomic.Int64

func startNginx(bin, httpConf string) (NginxServer, *process, error) {
	name := "nginx-" + strconv.FormatInt(nginxSeq.Add(1), 10)
	dir, err := makeDir(name)
	if err != nil {
		return NginxServer{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return NginxServer{}, nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var temps strings.Builder
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", kind, filepath.Join(dir, kind))
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %s;
error_log stderr notice;
worker_shutdown_timeout 5s; # upgraded connections hold a graceful stop
events { worker_connections 1024; }
http {
    access_log off;
%s
%s
}
`, filepath.Join(dir, "nginx.pid"), temps.String(), strings.ReplaceAll(httpConf, NginxListen, addr))
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return NginxServer{}, nil, fmt.Errorf("testenv: %w", err)
	}
	if err := chownToServerUser(confFile); err != nil {
		return NginxServer{}, nil, err
	}
	ready := func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// SIGQUIT: nginx's graceful stop, as systemctl stop nginx asks.
	p, err := startOwn(ctx, name, dir, syscall.SIGQUIT, ready, bin, "-e", "stderr", "-p", dir, "-c", confFile)
	if err != nil {
		return NginxServer{}, nil, err
	}
	mu.Lock()
	procs = append(procs, p)
	mu.Unlock()
	return NginxServer{Addr: addr}, p, nil
}
