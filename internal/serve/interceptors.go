package serve

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concur-dev/concur/api/violation"
)

// interceptorChain returns the server's interceptors, outermost first:
//
//  1. metrics, so that every call is counted, refused ones included;
//  2. logging (slog), skipping health checks and reflection, which tools poll;
//  3. auth, when a token is configured; health stays open for probes;
//  4. validation: a request's Validate, and its service's CheckLimits, run before the handler;
//  5. recovery, innermost, so that a panic becomes INTERNAL before the layers above see it.
func interceptorChain(log *slog.Logger, metrics *grpcprom.ServerMetrics, token []byte) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK {
				return logging.LevelDebug
			}
			return logging.DefaultServerCodeToLevel(c)
		}),
	}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	notTooling := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName && !strings.HasPrefix(c.Service, "grpc.reflection.")
	})
	recoveryOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		log.ErrorContext(ctx, "handler panicked", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error: the server logged the details")
	})

	unary := []grpc.UnaryServerInterceptor{
		metrics.UnaryServerInterceptor(),
		selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(logger, logOpts...), notTooling),
	}
	stream := []grpc.StreamServerInterceptor{
		metrics.StreamServerInterceptor(),
		selector.StreamServerInterceptor(logging.StreamServerInterceptor(logger, logOpts...), notTooling),
	}
	if token != nil {
		notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
			return c.Service != healthpb.Health_ServiceDesc.ServiceName
		})
		check := bearer(token)
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(check), notHealth))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(check), notHealth))
	}
	unary = append(unary, validateUnary, recovery.UnaryServerInterceptor(recoveryOpt))
	stream = append(stream, validateStream, recovery.StreamServerInterceptor(recoveryOpt))
	return unary, stream
}

// readToken reads the bearer token from path; surrounding white space is ignored.
func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --auth-token-file: %w", err)
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) == 0 {
		return nil, fmt.Errorf("--auth-token-file %s is empty", path)
	}
	return token, nil
}

// bearer accepts calls whose authorization header is "Bearer <token>".
func bearer(token []byte) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid for this server")
		}
		return ctx, nil
	}
}

// validator is implemented by every request message of the concur contracts.
type validator interface{ Validate() error }

// validateUnary and validateStream check each request before the handler sees it (see
// Service): go-grpc-middleware's validator interceptor would flatten the error to its message
// and drop the google.rpc.BadRequest detail that names the fields, and knows no limits, so
// concur keeps its own.
func validateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := check(info.Server, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, validatingStream{ss, srv})
}

// validatingStream checks every message the handler receives, the request of a server
// stream and each message of a client stream alike.
type validatingStream struct {
	grpc.ServerStream
	srv any
}

func (s validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return check(s.srv, m)
}

// check runs req's Validate and, when srv is a LimitChecker, its CheckLimits, and returns
// every violation they found in one INVALID_ARGUMENT, in req's field order; nil when there is
// none. An error of Validate that carries no BadRequest is returned alone, as a status.
func check(srv, req any) error {
	var l violation.List
	if v, ok := req.(validator); ok {
		if err := v.Validate(); err != nil && !l.AddFrom(err) {
			if _, isStatus := status.FromError(err); isStatus {
				return err
			}
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if c, ok := srv.(LimitChecker); ok {
		c.CheckLimits(req, &l)
	}
	if m, ok := req.(protoreflect.ProtoMessage); ok {
		l.Sort(m.ProtoReflect().Descriptor())
	}
	return l.Err()
}
