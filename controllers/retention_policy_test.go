package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestRetentionOf(t *testing.T) {
	ptr := func(n int32) *int32 { return &n }
	ttl := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	defaults := Retention{MaxCount: 1000, TTL: 7 * 24 * time.Hour}
	for _, tc := range []struct {
		name     string
		policy   v1alpha1.ActivityPolicy
		defaults Retention
		maxCount *int32
		ttl      time.Duration
	}{
		{"unset: the operator's defaults", v1alpha1.ActivityPolicy{}, defaults, ptr(1000), 7 * 24 * time.Hour},
		{"the connector's own win", v1alpha1.ActivityPolicy{MaxCount: ptr(5), TTL: ttl(time.Hour)}, defaults, ptr(5), time.Hour},
		{"maxCount 0 keeps none", v1alpha1.ActivityPolicy{MaxCount: ptr(0)}, defaults, ptr(0), 7 * 24 * time.Hour},
		{"ttl 0s turns the default off", v1alpha1.ActivityPolicy{TTL: ttl(0)}, defaults, ptr(1000), 0},
		{"no defaults, nothing set: no limit", v1alpha1.ActivityPolicy{}, Retention{}, nil, 0},
		{"a negative ttl is no limit", v1alpha1.ActivityPolicy{TTL: ttl(-time.Second)}, Retention{}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maxCount, ttl := retentionOf(tc.policy, tc.defaults)
			if (maxCount == nil) != (tc.maxCount == nil) || maxCount != nil && *maxCount != *tc.maxCount || ttl != tc.ttl {
				t.Errorf("got %v %v, want %v %v", maxCount, ttl, tc.maxCount, tc.ttl)
			}
		})
	}
}
