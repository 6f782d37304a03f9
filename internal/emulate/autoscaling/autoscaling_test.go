package autoscaling

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"

	"github.com/bbb-agent/bbb-agent/internal/emulate/awsemu"
)

// sdkClient is the real aws-sdk-go-v2 Auto Scaling client pointed at the
// emulation, retrying throttling without waiting.
func sdkClient(t *testing.T, s *Server) *sdk.Client {
	t.Helper()
	cfg, _ := awsemu.Serve(t, s, "eu-central-1")
	return sdk.NewFromConfig(cfg)
}

func TestEmulatedAutoScalingWithSDK(t *testing.T) {
	s := New()
	c := sdkClient(t, s)
	ctx := context.Background()
	s.StartAction("asg", "drain", "i-1")

	if _, err := c.RecordLifecycleActionHeartbeat(ctx, &sdk.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"), InstanceId: aws.String("i-1"),
	}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	s.Throttle(2)
	if _, err := c.CompleteLifecycleAction(ctx, &sdk.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"), InstanceId: aws.String("i-1"),
		LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("complete after two throttles: %v", err)
	}
	_, err := c.CompleteLifecycleAction(ctx, &sdk.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"), InstanceId: aws.String("i-1"),
		LifecycleActionResult: aws.String("CONTINUE"),
	})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != CodeValidationError ||
		apiErr.ErrorMessage() != "No active Lifecycle Action found with instance ID i-1" {
		t.Fatalf("second complete: %v", err)
	}

	want := []Call{
		{Action: ActionHeartbeat, Group: "asg", Hook: "drain", InstanceID: "i-1"},
		{Action: ActionComplete, Group: "asg", Hook: "drain", InstanceID: "i-1", Result: "CONTINUE", Error: CodeThrottling},
		{Action: ActionComplete, Group: "asg", Hook: "drain", InstanceID: "i-1", Result: "CONTINUE", Error: CodeThrottling},
		{Action: ActionComplete, Group: "asg", Hook: "drain", InstanceID: "i-1", Result: "CONTINUE"},
		{Action: ActionComplete, Group: "asg", Hook: "drain", InstanceID: "i-1", Result: "CONTINUE", Error: CodeValidationError},
	}
	if got := s.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %+v\nwant %+v", got, want)
	}
}

func TestEmulatedAutoScalingValidation(t *testing.T) {
	s := New()
	c := sdkClient(t, s)
	ctx := context.Background()
	s.StartAction("asg", "drain", "i-1")

	for name, in := range map[string]*sdk.CompleteLifecycleActionInput{
		"other instance": {AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"),
			InstanceId: aws.String("i-2"), LifecycleActionResult: aws.String("CONTINUE")},
		"other hook": {AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("launch"),
			InstanceId: aws.String("i-1"), LifecycleActionResult: aws.String("CONTINUE")},
		"bad result": {AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"),
			InstanceId: aws.String("i-1"), LifecycleActionResult: aws.String("PROCEED")},
		"token only": {AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"),
			LifecycleActionToken: aws.String("bcd2f1b8-9a78-44d3-8a7a-4dd07d7cf635"), LifecycleActionResult: aws.String("CONTINUE")},
	} {
		_, err := c.CompleteLifecycleAction(ctx, in)
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != CodeValidationError {
			t.Errorf("%s: %v, want ValidationError", name, err)
		}
	}
	// The action is still there after the failed attempts.
	if _, err := c.CompleteLifecycleAction(ctx, &sdk.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("asg"), LifecycleHookName: aws.String("drain"), InstanceId: aws.String("i-1"),
		LifecycleActionResult: aws.String("ABANDON"),
	}); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

// TestEmulatedAutoScalingWire checks the documents on the wire: the Query
// request the emulation parses, the success document and the error document.
func TestEmulatedAutoScalingWire(t *testing.T) {
	s := New()
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	s.StartAction("asg", "drain", "i-1")

	post := func(form url.Values, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth {
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-central-1/autoscaling/aws4_request")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
			t.Errorf("content type %q", ct)
		}
		return resp.StatusCode, string(body)
	}
	form := url.Values{
		"Action": {ActionHeartbeat}, "Version": {APIVersion},
		"AutoScalingGroupName": {"asg"}, "LifecycleHookName": {"drain"}, "InstanceId": {"i-1"},
	}

	code, body := post(form, false)
	if code != http.StatusForbidden || !strings.Contains(body, "<Code>MissingAuthenticationToken</Code>") {
		t.Errorf("unsigned: %d %s", code, body)
	}

	code, body = post(form, true)
	var ok struct {
		XMLName   xml.Name
		Result    *struct{} `xml:"RecordLifecycleActionHeartbeatResult"`
		RequestID string    `xml:"ResponseMetadata>RequestId"`
	}
	if err := xml.Unmarshal([]byte(body), &ok); err != nil || code != http.StatusOK {
		t.Fatalf("heartbeat: %d %s (%v)", code, body, err)
	}
	if ok.XMLName != (xml.Name{Space: Namespace, Local: "RecordLifecycleActionHeartbeatResponse"}) ||
		ok.Result == nil || len(ok.RequestID) != 36 {
		t.Errorf("heartbeat document: %s", body)
	}

	form.Set("Version", "2010-08-01")
	code, body = post(form, true)
	var fail struct {
		XMLName   xml.Name
		Error     struct{ Type, Code, Message string }
		RequestID string `xml:"RequestId"`
	}
	if err := xml.Unmarshal([]byte(body), &fail); err != nil || code != http.StatusBadRequest {
		t.Fatalf("wrong version: %d %s (%v)", code, body, err)
	}
	if fail.XMLName != (xml.Name{Space: Namespace, Local: "ErrorResponse"}) || fail.Error.Type != "Sender" ||
		fail.Error.Code != CodeInvalidAction || fail.RequestID == "" {
		t.Errorf("error document: %s", body)
	}
}
