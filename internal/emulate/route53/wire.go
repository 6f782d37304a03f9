package route53

import (
	"encoding/xml"
	"net/http"
)

// The XML shapes below follow aws-sdk-go-v2/service/route53's serializers.go
// (requests) and deserializers.go (answers); element names are the API's.

// changeRequest is the body of ChangeResourceRecordSets.
type changeRequest struct {
	XMLName xml.Name    `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ChangeResourceRecordSetsRequest"`
	Comment string      `xml:"ChangeBatch>Comment"`
	Changes []changeXML `xml:"ChangeBatch>Changes>Change"`
}

type changeXML struct {
	Action string
	RRset  rrsetXML `xml:"ResourceRecordSet"`
}

type rrsetXML struct {
	Name          string
	Type          string
	SetIdentifier string    `xml:",omitempty"`
	AliasTarget   *aliasXML `xml:",omitempty"`
	TTL           *int64    `xml:",omitempty"`
	Records       []rrXML   `xml:"ResourceRecords>ResourceRecord"`
}

type rrXML struct {
	Value string
}

type aliasXML struct {
	HostedZoneID         string `xml:"HostedZoneId"`
	DNSName              string
	EvaluateTargetHealth bool
}

// parseChanges reads a ChangeResourceRecordSets body; the Changes it returns
// carry canonical names.
func parseChanges(body []byte) (changeRequest, []Change, error) {
	var req changeRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		return req, nil, err
	}
	changes := make([]Change, len(req.Changes))
	for i, c := range req.Changes {
		rr := RRset{Name: canonicalName(c.RRset.Name), Type: c.RRset.Type, SetIdentifier: c.RRset.SetIdentifier}
		if c.RRset.TTL != nil {
			rr.TTL = *c.RRset.TTL
		}
		if c.RRset.AliasTarget != nil {
			rr.AliasDNSName = c.RRset.AliasTarget.DNSName
		}
		for _, r := range c.RRset.Records {
			rr.Values = append(rr.Values, r.Value)
		}
		changes[i] = Change{Action: c.Action, RRset: rr}
	}
	return req, changes, nil
}

func rrsetToXML(rr RRset) rrsetXML {
	x := rrsetXML{Name: rr.Name, Type: rr.Type, SetIdentifier: rr.SetIdentifier}
	if rr.AliasDNSName != "" {
		// Z2FDTNDATAQYW2 is the real CloudFront zone, the usual alias target.
		x.AliasTarget = &aliasXML{HostedZoneID: "Z2FDTNDATAQYW2", DNSName: rr.AliasDNSName}
		return x
	}
	ttl := rr.TTL
	x.TTL = &ttl
	for _, v := range rr.Values {
		x.Records = append(x.Records, rrXML{Value: v})
	}
	return x
}

type hostedZoneDoc struct {
	ID              string `xml:"Id"`
	Name            string
	CallerReference string
	Config          struct {
		Comment     string `xml:",omitempty"`
		PrivateZone bool
	}
	ResourceRecordSetCount int
}

func hostedZoneXML(z *zone) hostedZoneDoc {
	doc := hostedZoneDoc{
		ID: "/hostedzone/" + z.ID, Name: z.Name, CallerReference: "emulated-" + z.ID,
		ResourceRecordSetCount: len(z.records),
	}
	doc.Config.PrivateZone = z.Private
	return doc
}

type listHostedZonesByNameResponse struct {
	XMLName          xml.Name        `xml:"ListHostedZonesByNameResponse"`
	Xmlns            string          `xml:"xmlns,attr"`
	HostedZones      []hostedZoneDoc `xml:"HostedZones>HostedZone"`
	DNSName          string          `xml:",omitempty"`
	HostedZoneID     string          `xml:"HostedZoneId,omitempty"`
	IsTruncated      bool
	NextDNSName      string `xml:",omitempty"`
	NextHostedZoneID string `xml:"NextHostedZoneId,omitempty"`
	MaxItems         int
}

type getHostedZoneResponse struct {
	XMLName       xml.Name          `xml:"GetHostedZoneResponse"`
	Xmlns         string            `xml:"xmlns,attr"`
	HostedZone    hostedZoneDoc     `xml:"HostedZone"`
	DelegationSet *delegationSetXML `xml:",omitempty"`
	VPCs          *vpcsXML          `xml:",omitempty"`
}

type delegationSetXML struct {
	NameServers []string `xml:"NameServers>NameServer"`
}

type vpcsXML struct {
	VPC []vpcXML
}

type vpcXML struct {
	Region string `xml:"VPCRegion"`
	ID     string `xml:"VPCId"`
}

type listResourceRecordSetsResponse struct {
	XMLName              xml.Name   `xml:"ListResourceRecordSetsResponse"`
	Xmlns                string     `xml:"xmlns,attr"`
	RRsets               []rrsetXML `xml:"ResourceRecordSets>ResourceRecordSet"`
	IsTruncated          bool
	NextRecordName       string `xml:",omitempty"`
	NextRecordType       string `xml:",omitempty"`
	NextRecordIdentifier string `xml:",omitempty"`
	MaxItems             int
}

// changeInfoResponse answers ChangeResourceRecordSets and GetChange.
type changeInfoResponse struct {
	XMLName    xml.Name
	Xmlns      string `xml:"xmlns,attr"`
	ChangeInfo changeInfoDoc
}

type changeInfoDoc struct {
	ID          string `xml:"Id"`
	Status      string
	SubmittedAt string
	Comment     string `xml:",omitempty"`
}

func changeInfoXML(c *change) changeInfoDoc {
	return changeInfoDoc{
		ID: "/change/" + c.id, Status: c.status, Comment: c.comment,
		SubmittedAt: c.submitted.Format("2006-01-02T15:04:05.000Z"),
	}
}

// errorResponse is the REST-XML error document.
type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string
		Code    string
		Message string
	}
	RequestID string `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	doc := errorResponse{Xmlns: Namespace, RequestID: requestID()}
	doc.Error.Type = "Sender"
	doc.Error.Code = code
	doc.Error.Message = message
	writeXML(w, status, doc.RequestID, doc)
}

func writeXML(w http.ResponseWriter, status int, id string, doc any) {
	body, err := xml.Marshal(doc)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}
