package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

var screenshot = flag.String("screenshot", "", "write a PNG of the dashboard with three nodes here (docs/dashboard.png: ../../docs/dashboard.png)")

// chromium finds Debian's chromium. Under CI a missing browser fails the
// test: .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium: .ci/run installs Debian's chromium package (apt-get install -y chromium)")
	}
	t.Skip("no chromium on this machine (apt-get install -y chromium); CI=true makes this a failure")
	return ""
}

// consoleErrors collects what the browser reports as errors.
type consoleErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (c *consoleErrors) add(url, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, url+": "+text)
}

// from lists the errors whose URL starts with prefix.
func (c *consoleErrors) from(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if strings.HasPrefix(m, prefix) || strings.HasPrefix(m, ": ") {
			out = append(out, m)
		}
	}
	return out
}

// TestDashboardBrowser drives a real headless Chromium against bbb-balancer
// serve with three bbb-sim servers, each with a bbb-agent.
func TestDashboardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries and a browser")
	}
	chrome := chromium(t)
	bins := testenv.Build(t, "github.com/bbb-agent/bbb-agent/cmd/bbb-balancer", "github.com/bbb-agent/bbb-agent/cmd/bbb-sim",
		"github.com/bbb-agent/bbb-agent/cmd/bbb-agent")
	balancerBin, simBin, agentBin := bins[0], bins[1], bins[2]
	bal := startBalancer(t, balancerBin, t.TempDir())
	e := &e2e{t: t, bin: balancerBin, url: bal.Ready}
	sims := map[string]simNode{}
	for i := 1; i <= 3; i++ {
		name, secret := fmt.Sprintf("bbb%d", i), fmt.Sprintf("sim-%d-secret-0123456789", i)
		s := startSim(t, simBin, "bbb-sim "+name, secret)
		sims[name] = s
		dir := t.TempDir()
		testenv.StartAgent(t, testenv.AgentOpts{Name: "bbb-agent " + name, Bin: agentBin, Args: []string{"run",
			"--balancer-url", bal.Ready, "--agent-token", agentToken, "--bbb-url", s.URL, "--bbb-secret", secret,
			"--node-name", name, "--state-dir", dir + "/state", "--admin-socket", dir + "/agent.sock", "--report-interval", "1s",
			"--logind=false", "--recordings-dir", dir}})
	}
	testenv.Eventually(t, 30*time.Second, "three nodes online", func() bool {
		n := 0
		for _, s := range e.status() {
			if s.Online {
				n++
			}
		}
		return n == 3
	})

	ctx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 800))
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	var errs consoleErrors
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value))
				}
				url := ""
				if ev.StackTrace != nil && len(ev.StackTrace.CallFrames) > 0 {
					url = ev.StackTrace.CallFrames[0].URL
				}
				errs.add(url, strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			errs.add(ev.ExceptionDetails.URL, ev.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				errs.add(ev.Entry.URL, ev.Entry.Text)
			}
		case *page.EventJavascriptDialogOpening:
			// The confirmation before an action: check what it says, then accept.
			if !strings.Contains(ev.Message, "no meeting ends") {
				errs.add(bal.Ready, "confirmation without \"no meeting ends\": "+ev.Message)
			}
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	evalInt := func(js string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	evalString := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		return loc
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the log: %v", err)
	}

	// Without a session: the login page.
	run("open the dashboard", chromedp.Navigate(bal.Ready+"/dashboard/"), chromedp.WaitVisible(`#login`))
	if loc := location(); loc != bal.Ready+"/dashboard/login" {
		t.Fatalf("without a session the dashboard went to %s, want the login", loc)
	}
	run("log in", chromedp.SendKeys(`input[name=password]`, adminToken), chromedp.Submit(`#login`), chromedp.WaitVisible(`#nodes`))

	online := func(want int) func() bool {
		return func() bool {
			return evalInt(`document.querySelectorAll('#nodes tr[data-liveness="online"]').length`) == want
		}
	}
	testenv.Eventually(t, 15*time.Second, "three nodes online on the page", online(3))

	// A meeting created through the balancer appears.
	lb, err := bbb.NewClient(bal.Ready, lbSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Create(ctx, bbb.CreateRequest{MeetingID: "chem-202", Name: "Chemistry 202"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the meeting on the page", func() bool {
		return evalInt(`document.querySelectorAll('#meetings tr[data-meeting="chem-202"]').length`) == 1
	})
	testenv.Eventually(t, 15*time.Second, "the meeting counted on its node", func() bool {
		return evalInt(`[...document.querySelectorAll('#nodes tr td:nth-child(4)')].reduce((s, td) => s + Number(td.textContent), 0)`) == 1
	})
	if *screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Cordon the node with the meeting from the page: the page and status
	// --json say cordoned (it drains; an empty one would be disabled at once).
	cordoned := ""
	for _, s := range e.status() {
		if s.Meetings == 1 {
			cordoned = s.Name
		}
	}
	row := `#nodes tr[data-node="` + cordoned + `"]`
	run("cordon "+cordoned, chromedp.Click(row+` button[data-to="cordoned"]`), chromedp.WaitVisible(`#message`))
	testenv.Eventually(t, 10*time.Second, cordoned+" cordoned on the page", func() bool {
		return evalString(`document.querySelector('`+row+`').dataset.state`) == "cordoned" &&
			strings.Contains(evalString(`document.querySelector('`+row+` td.state').textContent`), "draining: 1 meeting left")
	})
	for _, s := range e.status() {
		if s.Name == cordoned && s.State != fleet.Cordoned {
			t.Fatalf("status --json says %s is %s after the cordon on the page", cordoned, s.State)
		}
	}

	// A forged POST without the CSRF token, even with the session cookie, is refused.
	got, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{bal.Ready + "/dashboard/"}})
	if err != nil {
		t.Fatalf("cookies: %v", err)
	}
	cookies := got.Cookies
	var id string
	for _, s := range e.status() {
		if s.Name != cordoned {
			id = s.ID
		}
	}
	req, _ := http.NewRequest(http.MethodPost, bal.Ready+"/dashboard/nodes/"+id+"/state", strings.NewReader("state=disabled"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(cookies) == 0 {
		t.Fatalf("forged POST with %d cookies: HTTP %d, want 403", len(cookies), resp.StatusCode)
	}
	if s, _ := e.server(id); s.State != fleet.Enabled {
		t.Fatalf("after the forged POST %s is %s", s.Name, s.State)
	}

	// A room: the moderator link lands on the node's join as moderator.
	out := e.ok("rooms", "create", "Physics 101", "--wait-for-moderator")
	m := regexp.MustCompile(`moderator: +(\S+)\nparticipant: +(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rooms create printed:\n%s", out)
	}
	var rooms []balancer.Room
	if err := json.Unmarshal([]byte(e.ok("rooms", "list", "--json")), &rooms); err != nil || len(rooms) != 1 {
		t.Fatalf("rooms list --json: %v", err)
	}
	if errs := errs.from(bal.Ready); len(errs) > 0 {
		t.Fatalf("errors in the browser console: %q", errs)
	}
	join := func(link, name, role string) {
		t.Helper()
		run("open "+link, chromedp.Navigate(link), chromedp.WaitVisible(`#join`), chromedp.SendKeys(`input[name=name]`, name),
			chromedp.Submit(`#join`))
		var at string
		testenv.Eventually(t, 10*time.Second, name+" redirected to a node", func() bool {
			at = location()
			return !strings.HasPrefix(at, bal.Ready)
		})
		on := ""
		for n, s := range sims {
			for _, id := range s.meetings(t) {
				if id == rooms[0].MeetingID {
					on = n
				}
			}
		}
		if on == "" || on == cordoned {
			t.Fatalf("the room's meeting runs on %q (%s is cordoned)", on, cordoned)
		}
		if u, _ := url.Parse(at); u == nil || u.Host != sims[on].hostPort(t) {
			t.Fatalf("%s landed on %s, the meeting runs on %s at %s", name, at, on, sims[on].URL)
		}
		info, err := sims[on].Client.GetMeetingInfo(ctx, rooms[0].MeetingID)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range info.Attendees {
			if a.FullName == name {
				if a.Role != role {
					t.Fatalf("%s joined as %s, want %s", name, a.Role, role)
				}
				return
			}
		}
		t.Fatalf("%s is not among the attendees %+v", name, info.Attendees)
	}
	join(m[1], "Mia Moderator", bbb.RoleModerator)
	join(m[2], "Pat Participant", bbb.RoleViewer)
	if errs := errs.from(bal.Ready); len(errs) > 0 {
		t.Fatalf("errors in the browser console: %q", errs)
	}
}
