package push

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"go.uber.org/zap"
)

// job is one request: one push to one subscription.
type job struct {
	push    *pushed
	sub     Subscription
	payload []byte
	urgency Urgency
	opened  time.Time
	attempt int
}

// pushed is one window's push, over all of a user's subscriptions: when
// the last job ends the due key goes.
type pushed struct {
	user      uint64
	remaining atomic.Int32
}

// recordSize is the aes128gcm record size webpush-go pads to. Its default,
// 4096, pads a 30-byte payload to a 4 KB request; 256 still hides the
// count's digits and fits any payload this package sends.
const recordSize = 256

// topic lets a push service replace a push not yet delivered with a newer
// one (RFC 8030 5.4): a phone off for a day gets one push, not hundreds.
const topic = "chatd-sync"

// newClient is the push HTTP client: no redirects (a push service has no
// reason to send one, and following it would bypass the endpoint check),
// and a dialer that refuses addresses the policy forbids.
func newClient(cfg *Config) *http.Client {
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = cfg.Policy.dialer().DialContext
		t.Proxy = nil // the endpoint check is about where requests go
		t.MaxIdleConnsPerHost = cfg.Workers
		t.ResponseHeaderTimeout = cfg.Timeout
		rt = t
	}
	return &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func (s *Service) work() {
	defer s.wg.Done()
	for {
		select {
		case j := <-s.jobs:
			s.send(j)
		case <-s.ctx.Done():
			return
		}
	}
}

// send makes one attempt at j and decides what follows: done, retry,
// drop the subscription, or fail.
func (s *Service) send(j *job) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	// webpush-go prefixes "mailto:" to any subject that is not https.
	subject := s.cfg.Subject
	if len(subject) > 7 && subject[:7] == "mailto:" {
		subject = subject[7:]
	}
	resp, err := webpush.SendNotificationWithContext(ctx, j.payload, &webpush.Subscription{
		Endpoint: j.sub.Endpoint,
		Keys: webpush.Keys{
			P256dh: base64.RawURLEncoding.EncodeToString(j.sub.P256dh),
			Auth:   base64.RawURLEncoding.EncodeToString(j.sub.Auth),
		},
	}, &webpush.Options{
		HTTPClient:      s.client,
		RecordSize:      recordSize,
		Subscriber:      subject,
		Topic:           topic,
		TTL:             int(s.cfg.TTL / time.Second),
		Urgency:         webpush.Urgency(j.urgency.header()),
		VAPIDPublicKey:  s.key.PublicBase64(),
		VAPIDPrivateKey: s.key.privateBase64(),
	})
	if err != nil {
		switch {
		case s.ctx.Err() != nil:
			return // closing: the due key stays for the next start
		case errors.Is(err, ErrHostRefused):
			s.fail(j, FailRefused, err)
		case resp == nil && !isNetErr(err):
			s.fail(j, FailEncrypt, err)
		default:
			s.retry(j, FailNetwork, 0, err)
		}
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		s.stats.sent.Add(1)
		s.stats.latency.Observe(time.Since(j.opened))
		s.end(j)
	case code == http.StatusNotFound || code == http.StatusGone:
		s.drop(j, code)
	case code == http.StatusTooManyRequests:
		s.retry(j, FailRateLimited, retryAfter(resp.Header.Get("Retry-After")), nil)
	case code >= 500:
		s.retry(j, FailServer, retryAfter(resp.Header.Get("Retry-After")), nil)
	default:
		s.fail(j, FailRejected, errors.New("push service answered "+resp.Status))
	}
}

// isNetErr tells a request that went out and failed (retry) from one that
// could not be built (do not): webpush-go returns both as plain errors,
// but the client's are *url.Error.
func isNetErr(err error) bool {
	var ue interface{ Timeout() bool }
	return errors.As(err, &ue)
}

// retry schedules another attempt after the service's Retry-After, or an
// exponential backoff with jitter; or fails j when it had its attempts.
func (s *Service) retry(j *job, reason string, after time.Duration, err error) {
	j.attempt++
	if j.attempt >= s.cfg.Attempts {
		s.fail(j, reason, err)
		return
	}
	if s.stats.retrying.Load() >= int64(s.cfg.Queue) {
		s.fail(j, FailRetryFull, err)
		return
	}
	d := s.cfg.Backoff << (j.attempt - 1)
	d = d/2 + rand.N(d/2+1) // jitter: a service that failed for everyone is not hit in step
	if after > 0 {
		d = after + rand.N(after/10+1) // never earlier than asked
	}
	d = min(d, s.cfg.MaxBackoff)
	s.stats.retries.Add(1)
	s.stats.retrying.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.stats.retrying.Add(-1)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		select {
		case s.jobs <- j:
		case <-s.ctx.Done():
		}
	}()
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func (s *Service) fail(j *job, reason string, err error) {
	s.stats.failed[reason].Add(1)
	s.log.Debug("push failed", zap.Uint64("user", j.push.user), zap.Uint32("device", j.sub.Device),
		zap.String("reason", reason), zap.Error(err))
	s.end(j)
}

// drop deletes a subscription the push service no longer knows, if the
// device did not register a new endpoint meanwhile.
func (s *Service) drop(j *job, code int) {
	gone, err := s.store.removeIf(j.push.user, j.sub.Device, func(cur Subscription) bool {
		return cur.Endpoint == j.sub.Endpoint
	})
	switch {
	case err != nil && !errors.Is(err, ErrUnknownDevice):
		s.log.Error("push: drop subscription", zap.Uint64("user", j.push.user), zap.Error(err))
	case gone:
		s.stats.dropped.Add(1)
		s.log.Debug("push subscription gone", zap.Uint64("user", j.push.user), zap.Uint32("device", j.sub.Device), zap.Int("status", code))
	}
	s.end(j)
}

// end counts j out of its push; the last one ends the push.
func (s *Service) end(j *job) {
	if j.push.remaining.Add(-1) == 0 {
		s.endPush(j.push.user)
	}
}
