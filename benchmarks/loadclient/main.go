// Command loadclient is grpc_bench.py's compiled load client: it times policy decisions over HTTP JSON,
// gRPC unary Decide, one DecideStream per client and Envoy's ext_authz Check, as a compiled gateway
// (Envoy, agentgateway, a Go proxy) would send them.
//
// There is no code generation: the messages are serialized by grpc_bench.py (-input: records of a
// 4-byte big-endian length and the bytes; JSON bodies for http, DecideRequests for unary and stream,
// CheckRequests for check) and sent as they are through a pass-through codec named "proto", so the
// content-type stays application/grpc+proto and the server sees ordinary protobuf. Each client has a
// connection of its own and one request in flight; a sample is one request's round trip (stream: Send
// then Recv), the answer's decision included (read with protowire, or encoding/json for http).
//
// Output: one JSON line, {"mode", "clients", "samples", "p50_us", "p99_us", "errors", "effects"}
// ("effects": how many timed answers had each decision); -raw FILE also writes every sample, in
// nanoseconds, as 8-byte big-endian integers (for the caller to pool rounds). With -verify, each
// record once in order by one client, untimed, and "answers" (one effect per record).
// Any RPC or HTTP error exits non-zero with a message on stderr.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec passes pre-serialized messages through: Marshal takes []byte or *[]byte, Unmarshal fills a
// *[]byte with a copy of the message (gRPC may reuse its buffer).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

const (
	decideMethod = "/joch.v1.PolicyService/Decide"
	streamMethod = "/joch.v1.PolicyService/DecideStream"
	checkMethod  = "/envoy.service.auth.v3.Authorization/Check"
)

// call sends record i and returns the answer's effect.
type call func(i int) (string, error)

// client is one connection's call and how to close it.
type client struct {
	call  call
	close func() error
}

func readRecords(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, errors.New("truncated record length")
		}
		n := int(binary.BigEndian.Uint32(data))
		if len(data) < 4+n {
			return nil, errors.New("truncated record")
		}
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	if len(out) == 0 {
		return nil, errors.New("no records")
	}
	return out, nil
}

// field returns the last occurrence of field num (bytes or varint) in a message.
func field(msg []byte, num protowire.Number) (bytesVal []byte, varint uint64, found bool) {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, 0, false
		}
		msg = msg[l:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return nil, 0, false
			}
			if n == num {
				bytesVal, found = v, true
			}
			msg = msg[m:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return nil, 0, false
			}
			if n == num {
				varint, found = v, true
			}
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(n, typ, msg)
			if m < 0 {
				return nil, 0, false
			}
			msg = msg[m:]
		}
	}
	return bytesVal, varint, found
}

var effects = map[uint64]string{1: "allow", 2: "deny", 3: "modify"}

// decideEffect reads a DecideResponse: decision (2) -> Decision.decision (1), requires (9) -> approval (1).
func decideEffect(answer []byte) (string, error) {
	decision, _, ok := field(answer, 2)
	if !ok {
		if e, _, isErr := field(answer, 3); isErr {
			return "", fmt.Errorf("DecideResponse error: %q", e)
		}
		return "", errors.New("DecideResponse without a decision")
	}
	_, effect, _ := field(decision, 1)
	name, ok := effects[effect]
	if !ok {
		return "", fmt.Errorf("unknown effect %d", effect)
	}
	if requires, _, ok := field(decision, 9); ok {
		if _, _, ok := field(requires, 1); ok {
			name += "+approval"
		}
	}
	return name, nil
}

// checkEffect reads a CheckResponse's x-joch-decision header: ok_response (3) or denied_response (2),
// headers (2) -> HeaderValueOption.header (1) -> HeaderValue key (1), value (2) or raw_value (3).
func checkEffect(answer []byte) (string, error) {
	response, _, ok := field(answer, 3)
	if !ok {
		if response, _, ok = field(answer, 2); !ok {
			return "", errors.New("CheckResponse with neither ok_response nor denied_response")
		}
	}
	for len(response) > 0 {
		n, typ, l := protowire.ConsumeTag(response)
		if l < 0 {
			break
		}
		response = response[l:]
		m := protowire.ConsumeFieldValue(n, typ, response)
		if m < 0 {
			break
		}
		if n == 2 && typ == protowire.BytesType {
			option, _ := protowire.ConsumeBytes(response)
			header, _, _ := field(option, 1)
			key, _, _ := field(header, 1)
			if string(key) == "x-joch-decision" {
				value, _, _ := field(header, 2)
				if raw, _, ok := field(header, 3); ok && len(value) == 0 {
					value = raw
				}
				return string(value), nil
			}
		}
		response = response[m:]
	}
	return "?", nil
}

type httpAnswer struct {
	Decision string `json:"decision"`
	Requires *struct {
		Approval json.RawMessage `json:"approval"`
	} `json:"requires"`
}

func httpClient(url, token string, records [][]byte) client {
	transport := &http.Transport{
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	c := &http.Client{Transport: transport}
	auth := "Bearer " + token
	return client{
		call: func(i int) (string, error) {
			request, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(records[i%len(records)]))
			if err != nil {
				return "", err
			}
			request.Header.Set("Content-Type", "application/json")
			request.Header.Set("Authorization", auth)
			response, err := c.Do(request)
			if err != nil {
				return "", err
			}
			body, err := io.ReadAll(response.Body)
			response.Body.Close()
			if err != nil {
				return "", err
			}
			if response.StatusCode != http.StatusOK {
				return "", fmt.Errorf("HTTP %d: %s", response.StatusCode, body)
			}
			var answer httpAnswer
			if err := json.Unmarshal(body, &answer); err != nil {
				return "", err
			}
			if answer.Requires != nil && len(answer.Requires.Approval) > 0 && string(answer.Requires.Approval) != "null" {
				return answer.Decision + "+approval", nil
			}
			return answer.Decision, nil
		},
		close: func() error { transport.CloseIdleConnections(); return nil },
	}
}

func grpcClient(mode, target, token string, records [][]byte) (client, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return client{}, err
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	switch mode {
	case "unary", "check":
		method, effect := decideMethod, decideEffect
		if mode == "check" {
			method, effect = checkMethod, checkEffect
		}
		var answer []byte
		return client{
			call: func(i int) (string, error) {
				if err := conn.Invoke(ctx, method, records[i%len(records)], &answer); err != nil {
					return "", err
				}
				return effect(answer)
			},
			close: conn.Close,
		}, nil
	case "stream":
		desc := &grpc.StreamDesc{StreamName: "DecideStream", ServerStreams: true, ClientStreams: true}
		stream, err := conn.NewStream(ctx, desc, streamMethod)
		if err != nil {
			conn.Close()
			return client{}, err
		}
		var answer []byte
		return client{
			call: func(i int) (string, error) {
				if err := stream.SendMsg(records[i%len(records)]); err != nil {
					return "", err
				}
				if err := stream.RecvMsg(&answer); err != nil {
					return "", err
				}
				return decideEffect(answer)
			},
			close: func() error {
				defer conn.Close()
				if err := stream.CloseSend(); err != nil {
					return err
				}
				if err := stream.RecvMsg(&answer); !errors.Is(err, io.EOF) {
					return fmt.Errorf("DecideStream did not end cleanly: %v", err)
				}
				return nil
			},
		}, nil
	}
	return client{}, fmt.Errorf("unknown mode %q", mode)
}

func newClient(mode, target, token string, records [][]byte) (client, error) {
	if mode == "http" {
		return httpClient(target, token, records), nil
	}
	return grpcClient(mode, target, token, records)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadclient: "+format+"\n", args...)
	os.Exit(1)
}

func pct(ordered []int64, q float64) float64 {
	return float64(ordered[min(len(ordered)-1, int(q*float64(len(ordered))))]) / 1000
}

func main() {
	mode := flag.String("mode", "", "http, unary, stream or check")
	target := flag.String("target", "", "host:port (http: the URL)")
	clients := flag.Int("clients", 1, "concurrent clients, a connection each, one request in flight each")
	samples := flag.Int("samples", 1000, "timed requests in all (split between the clients)")
	warmup := flag.Int("warmup", 100, "untimed requests per client first")
	input := flag.String("input", "", "records: 4-byte big-endian length, then the bytes")
	token := flag.String("token", "", "bearer token (authorization metadata / header)")
	verify := flag.Bool("verify", false, "send each record once, in order, untimed; print the answers")
	raw := flag.String("raw", "", "also write the samples (ns, 8-byte big-endian) to this file")
	flag.Parse()
	encoding.RegisterCodec(rawCodec{})
	if *target == "" || *input == "" || *clients < 1 {
		fail("-mode, -target, -input and -clients >= 1 are needed")
	}
	records, err := readRecords(*input)
	if err != nil {
		fail("%s: %v", *input, err)
	}

	if *verify {
		c, err := newClient(*mode, *target, *token, records)
		if err != nil {
			fail("%v", err)
		}
		answers := make([]string, len(records))
		for i := range records {
			if answers[i], err = c.call(i); err != nil {
				fail("%s record %d: %v", *mode, i, err)
			}
		}
		if err := c.close(); err != nil {
			fail("%v", err)
		}
		out, _ := json.Marshal(map[string]any{"mode": *mode, "answers": answers})
		fmt.Println(string(out))
		return
	}

	perClient := max(1, *samples / *clients)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	timings := make([][]int64, *clients)
	counts := make([]map[string]int, *clients)
	errs := make([]error, *clients)
	ready.Add(*clients)
	done.Add(*clients)
	for n := range *clients {
		go func() {
			defer done.Done()
			readied := false
			defer func() {
				if !readied {
					ready.Done()
				}
			}()
			c, err := newClient(*mode, *target, *token, records)
			if err != nil {
				errs[n] = err
				return
			}
			offset := 37 * n
			for i := range *warmup {
				if _, err := c.call(offset + i); err != nil {
					errs[n] = fmt.Errorf("warm-up: %w", err)
					return
				}
			}
			readied = true
			ready.Done()
			<-start
			out := make([]int64, perClient)
			count := map[string]int{}
			for i := range perClient {
				began := time.Now()
				effect, err := c.call(offset + *warmup + i)
				out[i] = int64(time.Since(began))
				if err != nil {
					errs[n] = err
					return
				}
				count[effect]++
			}
			timings[n], counts[n] = out, count
			errs[n] = c.close()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	var all []int64
	effectCounts := map[string]int{}
	for n := range *clients {
		if errs[n] != nil {
			fail("%s client %d: %v", *mode, n, errs[n])
		}
		all = append(all, timings[n]...)
		for k, v := range counts[n] {
			effectCounts[k] += v
		}
	}
	if *raw != "" {
		buf := make([]byte, 0, 8*len(all))
		for _, sample := range all {
			buf = binary.BigEndian.AppendUint64(buf, uint64(sample))
		}
		if err := os.WriteFile(*raw, buf, 0o644); err != nil {
			fail("%v", err)
		}
	}
	slices.Sort(all)
	out, _ := json.Marshal(map[string]any{
		"mode":    *mode,
		"clients": *clients,
		"samples": len(all),
		"p50_us":  pct(all, 0.5),
		"p99_us":  pct(all, 0.99),
		"errors":  0,
		"effects": effectCounts,
	})
	fmt.Println(string(out))
}
