package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// evaluate loads an uploaded template for a plan: at most
// Config.MaxConcurrentPlans at once on this server (a plan that finds no
// slot within Config.PlanQueueWait answers 429 with Retry-After), each within
// Config.EvalTimeout and Config.EvalLimits (a template past a limit answers
// 400 with an "Evaluation limit exceeded" diagnostic at the place).
func (s *Server) evaluate(ctx context.Context, stack string, sb storedBundle, vars []spec.RawVar, files []spec.VarFile, prior spec.Prior) (*spec.Stack, error) {
	release, err := s.planSlot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.EvalTimeout)
	defer cancel()
	return load(ctx, s.cfg.EvalLimits, stack, sb, vars, files, prior)
}

// planSlot takes one of the server's plan slots, waiting at most
// PlanQueueWait.
func (s *Server) planSlot(ctx context.Context) (func(), error) {
	release := func() { <-s.planSlots }
	select {
	case s.planSlots <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(s.cfg.PlanQueueWait)
	defer t.Stop()
	select {
	case s.planSlots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, &httpError{code: http.StatusTooManyRequests, retryAfter: s.cfg.PlanQueueWait,
			msg: "too many plans: this server already evaluates " + strconv.Itoa(cap(s.planSlots)) + " templates; retry shortly"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
