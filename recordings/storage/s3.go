package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Multipart settings: files above the threshold go up in parts through
// the transfer manager. Its memory is (concurrency + 1) part buffers plus
// the first read, which io.ReadAll's up to the threshold (growing past it):
// a 64 MiB threshold cost about 200 MiB of RSS on a 1 GiB file, 8 MiB costs
// about 50 MiB (agent BenchmarkShipRecordings), at the same throughput.
const (
	multipartThreshold = 8 << 20
	partSize           = 8 << 20
	uploadConcurrency  = 2
)

// sha256MetaKey is the user metadata (x-amz-meta-sha256) holding an
// object's hex SHA-256, for single and multipart objects alike.
const sha256MetaKey = "sha256"

// ManifestName is the commit marker written last under a format's prefix.
const ManifestName = "manifest.json"

// Manifest is the content of manifest.json.
type Manifest struct {
	RecordID string         `json:"record_id"`
	Format   string         `json:"format"`
	Files    []ManifestFile `json:"files"`
	Size     int64          `json:"size"`
}

// ManifestFile is one file of a Manifest.
type ManifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// S3 ships recordings to an S3 bucket.
type S3 struct {
	client *s3.Client
	tm     *transfermanager.Client
	bucket string
	prefix string
}

// NewS3 returns the s3 back-end with credentials from the standard AWS
// chain (environment, shared files, instance role).
func NewS3(ctx context.Context, bucket, prefix string, o Options) (*S3, error) {
	var opts []func(*config.LoadOptions) error
	if o.S3Region != "" {
		opts = append(opts, config.WithRegion(o.S3Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("recordings storage s3: load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.HTTPClient != nil {
			so.HTTPClient = o.HTTPClient
		}
		if o.S3Endpoint != "" {
			so.BaseEndpoint = aws.String(o.S3Endpoint)
			so.UsePathStyle = true
		}
	})
	return NewS3Client(client, bucket, prefix), nil
}

// NewS3Client returns the s3 back-end over a ready client.
func NewS3Client(client *s3.Client, bucket, prefix string) *S3 {
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.MultipartUploadThreshold = multipartThreshold
		o.PartSizeBytes = partSize
		o.Concurrency = uploadConcurrency
		o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmSha256
	})
	return &S3{client: client, tm: tm, bucket: bucket, prefix: prefix}
}

func (s *S3) String() string { return "s3://" + path.Join(s.bucket, s.prefix) }

// FormatPrefix is the key prefix of a recording format, ending in "/".
func (s *S3) FormatPrefix(recordID, format string) string {
	return path.Join(s.prefix, format, recordID) + "/"
}

// Ship uploads every file of the format not already there with the same
// SHA-256, then the manifest, then deletes the objects under the format's
// prefix that the manifest does not list (files of an earlier build).
func (s *S3) Ship(ctx context.Context, sh Shipment) (Receipt, error) {
	if err := validID(sh.RecordID); err != nil {
		return Receipt{}, err
	}
	if err := validID(sh.Format); err != nil {
		return Receipt{}, err
	}
	files, err := ListFiles(sh.Dir)
	if err != nil {
		return Receipt{}, err
	}
	pre := s.FormatPrefix(sh.RecordID, sh.Format)
	m := Manifest{RecordID: sh.RecordID, Format: sh.Format, Files: []ManifestFile{}}
	var r Receipt
	for _, f := range files {
		if f.Path == ManifestName {
			continue // the commit marker's key is ours
		}
		wrote, mf, err := s.putFile(ctx, pre, f.Path, filepath.Join(sh.Dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return Receipt{}, err
		}
		if wrote {
			r.Written++
		}
		m.Files = append(m.Files, mf)
		m.Size += mf.Size
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Receipt{}, err
	}
	sum := sha256.Sum256(body)
	hexSum := hex.EncodeToString(sum[:])
	key := pre + ManifestName
	have, err := s.objectSHA256(ctx, key)
	if err != nil {
		return Receipt{}, err
	}
	if have != hexSum {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentType:       aws.String("application/json"),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
			ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			Metadata:          map[string]string{sha256MetaKey: hexSum},
		})
		if err != nil {
			return Receipt{}, fmt.Errorf("s3: put %s/%s: %w", s.bucket, key, err)
		}
		r.Written++
	}
	// Only now that the manifest in place lists this build: objects of an
	// earlier build (a rebuild dropped or renamed files) go. A crash or an
	// error before this point leaves extras no manifest lists, harmless to
	// playback; the next ship of the recording removes them.
	removed, err := s.removeUnlisted(ctx, pre, m)
	if err != nil {
		return Receipt{}, err
	}
	r.Removed = removed
	r.Location, r.Size, r.SHA256 = "s3://"+s.bucket+"/"+pre, m.Size, hexSum
	return r, nil
}

// removeUnlisted deletes the objects under pre (a format's prefix, ending
// in "/", so that abc-1/ never lists abc-10/) that are neither in m nor the
// manifest itself, and returns how many it deleted. Call it only once the
// manifest holding m is in place.
func (s *S3) removeUnlisted(ctx context.Context, pre string, m Manifest) (int, error) {
	if !strings.HasSuffix(pre, "/") {
		return 0, fmt.Errorf("s3: refusing to clean up under %q: a prefix without a trailing / also matches other recordings", pre)
	}
	if len(m.Files) == 0 {
		// Nothing playable was shipped (a format emptied under us): keep
		// what is there rather than clean up to nothing.
		return 0, nil
	}
	keep := make(map[string]bool, len(m.Files)+1)
	keep[pre+ManifestName] = true
	for _, f := range m.Files {
		keep[pre+f.Path] = true
	}
	removed := 0
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(pre)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return removed, fmt.Errorf("s3: list %s/%s to remove the files of an earlier build (does the role allow s3:ListBucket?): %w", s.bucket, pre, err)
		}
		var stale []types.ObjectIdentifier
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if len(key) <= len(pre) || !strings.HasPrefix(key, pre) || keep[key] {
				continue
			}
			stale = append(stale, types.ObjectIdentifier{Key: aws.String(key)})
		}
		if len(stale) == 0 {
			continue
		}
		// A listing page holds at most 1000 keys, DeleteObjects' limit.
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: stale, Quiet: aws.Bool(true)}})
		if err != nil {
			return removed, fmt.Errorf("s3: delete %d objects of an earlier build under %s/%s (does the role allow s3:DeleteObject?): %w", len(stale), s.bucket, pre, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return removed, fmt.Errorf("s3: delete %s/%s, a file of an earlier build (%d of %d deletes failed; does the role allow s3:DeleteObject?): %s: %s",
				s.bucket, aws.ToString(e.Key), len(out.Errors), len(stale), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		removed += len(stale)
	}
	return removed, nil
}

// putFile uploads one file unless the object already has its SHA-256.
func (s *S3) putFile(ctx context.Context, pre, rel, src string) (bool, ManifestFile, error) {
	sum, size, err := fileSHA256(src)
	if err != nil {
		return false, ManifestFile{}, fmt.Errorf("s3: %w", err)
	}
	mf, key := ManifestFile{Path: rel, Size: size, SHA256: sum}, pre+rel
	have, err := s.objectSHA256(ctx, key)
	if err != nil {
		return false, ManifestFile{}, err
	}
	if have == sum {
		return false, mf, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return false, ManifestFile{}, fmt.Errorf("s3: %w", err)
	}
	defer f.Close()
	in := &transfermanager.UploadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), Body: f,
		ChecksumAlgorithm: tmtypes.ChecksumAlgorithmSha256,
		Metadata:          map[string]string{sha256MetaKey: sum},
	}
	if size < multipartThreshold {
		// One PutObject: the server checks the bytes against the sum taken
		// before, so a file that changed since is refused, never stored
		// under the wrong sum.
		raw, _ := hex.DecodeString(sum)
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(raw))
	}
	if _, err := s.tm.UploadObject(ctx, in); err != nil {
		return false, ManifestFile{}, fmt.Errorf("s3: upload %s to %s/%s: %w", src, s.bucket, key, err)
	}
	return true, mf, nil
}

// objectSHA256 is the hex SHA-256 an object was written with, or "" if
// there is no such object.
func (s *S3) objectSHA256(ctx context.Context, key string) (string, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		var nf *types.NotFound
		var ae smithy.APIError
		if errors.As(err, &nf) || (errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")) {
			return "", nil
		}
		return "", fmt.Errorf("s3: head %s/%s: %w", s.bucket, key, err)
	}
	return out.Metadata[sha256MetaKey], nil
}

// Check writes and deletes a probe object under the prefix.
func (s *S3) Check(ctx context.Context) error {
	key := path.Join(s.prefix, ".bbb-agent-check-"+rand.Text())
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
		Body: bytes.NewReader([]byte("probe\n")), ChecksumAlgorithm: types.ChecksumAlgorithmSha256})
	if err != nil {
		return fmt.Errorf("s3: cannot write to %s (bucket, credentials, endpoint?): %w", s, err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
		return fmt.Errorf("s3: cannot delete the probe %s/%s: %w", s.bucket, key, err)
	}
	return nil
}
