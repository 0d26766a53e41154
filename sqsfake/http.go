package sqsfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/sqspool/sqspool/internal/sdkhttp"
)

// maxRequestBytes bounds a request body: a 1 MiB batch grows by a third
// when its binary attributes are base64-encoded, plus JSON framing.
const maxRequestBytes = 4 << 20

const (
	targetPrefix   = "AmazonSQS."
	jsonType       = "application/x-amz-json-1.0"
	errorNamespace = "com.amazonaws.sqs#"
)

// Handler serves the fake over SQS's AWS JSON 1.0 protocol, the one
// aws-sdk-go-v2 speaks: POST / with the operation in the X-Amz-Target header
// ("AmazonSQS.ReceiveMessage") and the input as JSON. Errors come back as SQS
// sends them, with the JSON __type and the x-amzn-query-error header, so that
// the SDK turns them into the same typed errors as the in-memory methods
// return. Faults, the hook and the call counters apply as to direct calls;
// a long poll ends when the client goes away.
//
// Use it when the code under test needs a real *sqs.Client (see
// NewSDKClient), or from another process or language.
func (f *Fake) Handler() http.Handler {
	return &server{f: f, ops: map[string]httpOp{
		OpReceiveMessage:               jsonOp(f.ReceiveMessage),
		OpDeleteMessage:                jsonOp(f.DeleteMessage),
		OpDeleteMessageBatch:           jsonOp(f.DeleteMessageBatch),
		OpChangeMessageVisibility:      jsonOp(f.ChangeMessageVisibility),
		OpChangeMessageVisibilityBatch: jsonOp(f.ChangeMessageVisibilityBatch),
		OpSendMessage:                  jsonOp(f.SendMessage),
		OpSendMessageBatch:             jsonOp(f.SendMessageBatch),
		OpGetQueueUrl:                  jsonOp(f.GetQueueUrl),
		OpGetQueueAttributes:           jsonOp(f.GetQueueAttributes),
		OpSetQueueAttributes:           jsonOp(f.SetQueueAttributes),
		OpCreateQueue:                  jsonOp(f.CreateQueue),
		OpDeleteQueue:                  jsonOp(f.DeleteQueue),
		OpPurgeQueue:                   jsonOp(f.PurgeQueue),
		OpListQueues:                   jsonOp(f.ListQueues),
	}}
}

// NewSDKClient returns a real *sqs.Client that talks to endpoint, the URL of
// a server running f.Handler(), with static credentials and f's region.
// optFns adjust the client, for example to set RetryMaxAttempts or an
// HTTPClient. The default HTTP client hands request bodies to the transport
// from memory: the fake answers within microseconds, quick enough to meet
// an SDK race that otherwise cuts a response now and then and retries the
// call (see internal/sdkhttp).
func (f *Fake) NewSDKClient(endpoint string, optFns ...func(*sqs.Options)) *sqs.Client {
	cfg := aws.Config{
		Region: f.region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "sqsfake", SecretAccessKey: "sqsfake", Source: "sqsfake"}, nil
		}),
	}
	base := func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.HTTPClient = sdkhttp.Client(nil)
	}
	return sqs.NewFromConfig(cfg, append([]func(*sqs.Options){base}, optFns...)...)
}

type httpOp func(ctx context.Context, body []byte) (any, error)

// jsonOp adapts an API method: the JSON members have the SDK input's field
// names, so the input decodes straight into the SDK struct.
func jsonOp[In, Out any](method func(context.Context, *In, ...func(*sqs.Options)) (*Out, error)) httpOp {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(In)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, &smithy.GenericAPIError{Code: "SerializationException", Message: err.Error(), Fault: smithy.FaultClient}
			}
		}
		out, err := method(ctx, in)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

type server struct {
	f   *Fake
	ops map[string]httpOp
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-amzn-RequestId", s.f.newID())
	name, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	op, ok := s.ops[name]
	if r.Method != http.MethodPost || !ok {
		writeError(w, http.StatusBadRequest, "com.amazon.coral.service#UnknownOperationException", "UnknownOperationException",
			smithy.FaultClient, fmt.Sprintf("%s %s with X-Amz-Target %q is not an SQS operation.", r.Method, r.URL.Path, r.Header.Get("X-Amz-Target")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, errorNamespace+"RequestEntityTooLarge", "RequestEntityTooLarge",
			smithy.FaultClient, err.Error())
		return
	}
	out, err := op(r.Context(), body)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client has gone
		}
		writeAPIError(w, err)
		return
	}
	payload, err := json.Marshal(wireValue(reflect.ValueOf(out)))
	if err != nil {
		writeAPIError(w, errInternal("encode response: "+err.Error()))
		return
	}
	w.Header().Set("Content-Type", jsonType)
	_, _ = w.Write(payload)
}

// writeAPIError sends err as SQS does: __type names the error shape, and
// x-amzn-query-error carries the query-protocol code that the SDK reports
// as ErrorCode().
func writeAPIError(w http.ResponseWriter, err error) {
	var params smithy.InvalidParamsError
	if errors.As(err, &params) {
		err = &smithy.GenericAPIError{Code: CodeMissingParameter, Message: params.Error(), Fault: smithy.FaultClient}
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		apiErr = &smithy.GenericAPIError{Code: "InternalFailure", Message: err.Error(), Fault: smithy.FaultServer}
	}
	status := httpStatus(apiErr)
	var withStatus interface{ HTTPStatusCode() int }
	if errors.As(err, &withStatus) {
		status = withStatus.HTTPStatusCode()
	}
	shape := apiErr.ErrorCode()
	if t := reflect.TypeOf(apiErr); t.Kind() == reflect.Pointer && t.Elem().PkgPath() == reflect.TypeFor[types.QueueDoesNotExist]().PkgPath() {
		shape = t.Elem().Name()
	}
	writeError(w, status, errorNamespace+shape, apiErr.ErrorCode(), apiErr.ErrorFault(), apiErr.ErrorMessage())
}

func writeError(w http.ResponseWriter, status int, typ, queryCode string, fault smithy.ErrorFault, msg string) {
	side := "Sender"
	if fault == smithy.FaultServer {
		side = "Receiver"
	}
	w.Header().Set("Content-Type", jsonType)
	w.Header().Set("x-amzn-query-error", queryCode+";"+side)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

var metadataType = reflect.TypeFor[middleware.Metadata]()

// wireValue turns an SDK output into what the JSON protocol carries: members
// by field name, nil members left out, blobs base64 (by encoding/json), and
// the SDK's ResultMetadata dropped.
func wireValue(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return wireValue(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		for i := range v.NumField() {
			field := v.Type().Field(i)
			if !field.IsExported() || field.Type == metadataType {
				continue
			}
			if w := wireValue(v.Field(i)); w != nil {
				out[field.Name] = w
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Bytes()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = wireValue(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[it.Key().String()] = wireValue(it.Value())
		}
		return out
	case reflect.String:
		return v.String()
	}
	return v.Interface()
}
