package inference_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference"
)

func TestCode(t *testing.T) {
	tests := []struct {
		code      inference.Code
		name      string
		status    int
		retryable bool
	}{
		{inference.CodeBadRequest, "bad_request", http.StatusBadRequest, false},
		{inference.CodeUnknownModel, "model_not_found", http.StatusNotFound, false},
		{inference.CodeNoWorker, "no_worker_available", http.StatusServiceUnavailable, false},
		{inference.CodeOverloaded, "worker_overloaded", http.StatusServiceUnavailable, true},
		{inference.CodeEngine, "engine_error", http.StatusBadGateway, true},
		{inference.CodeTimeout, "upstream_timeout", http.StatusGatewayTimeout, true},
		{inference.CodeUnattested, "peer_unattested", http.StatusServiceUnavailable, true},
		{inference.CodeInternal, "internal_error", http.StatusInternalServerError, false},
		{inference.CodeCancelled, "cancelled", 499, false},
		{inference.CodeTooExpensive, "price_too_high", http.StatusServiceUnavailable, false},
		{inference.CodeUntrusted, "trust_too_low", http.StatusServiceUnavailable, false},
		{inference.CodeBadReceipt, "receipt_invalid", http.StatusBadGateway, false},
		{0, "code(0)", http.StatusInternalServerError, false},
		{100, "code(100)", http.StatusInternalServerError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.code.String(); got != tt.name {
				t.Errorf("String = %q, want %q", got, tt.name)
			}
			if got := tt.code.HTTPStatus(); got != tt.status {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.status)
			}
			if got := tt.code.Retryable(); got != tt.retryable {
				t.Errorf("Retryable = %v, want %v", got, tt.retryable)
			}
		})
	}
}

func TestError(t *testing.T) {
	tests := []struct {
		err  *inference.Error
		want string
	}{
		{&inference.Error{Code: inference.CodeEngine, Message: "down"}, "engine_error: down"},
		{&inference.Error{Code: inference.CodeBadRequest, Message: "bad", Param: "model"}, "bad_request: bad (param model)"},
		{inference.Errorf(inference.CodeUnknownModel, "model %q", "x"), `model_not_found: model "x"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestAsError(t *testing.T) {
	typed := inference.Errorf(inference.CodeOverloaded, "full")
	tests := []struct {
		name     string
		err      error
		wantCode inference.Code
		wantMsg  string
	}{
		{"typed", typed, inference.CodeOverloaded, "full"},
		{"wrapped typed", fmt.Errorf("forwarding: %w", typed), inference.CodeOverloaded, "full"},
		{"plain", errors.New("boom"), inference.CodeEngine, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inference.AsError(tt.err, inference.CodeEngine)
			if got.Code != tt.wantCode || got.Message != tt.wantMsg {
				t.Fatalf("AsError = %+v, want code %v message %q", got, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
