package testenv

import (
	"io"
	"net/http"
	"testing"
)

// Get fetches u with a plain GET (redirects followed) and returns the status
// and the body; the test fails when the request cannot be made.
func Get(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(b)
}

// GetBody is Get's body.
func GetBody(t testing.TB, u string) string {
	t.Helper()
	_, body := Get(t, u)
	return body
}

// GetStatus is Get's status.
func GetStatus(t testing.TB, u string) int {
	t.Helper()
	code, _ := Get(t, u)
	return code
}
