package sfere_test

import (
	"testing"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/storetest"
)

// Both stores pass the one conformance suite, as a third party's would.
func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store {
		return sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: onEvict})
	})
}

func TestTTLStoreConformance(t *testing.T) {
	for _, expiry := range []sfere.Expiry{sfere.Sliding, sfere.Fixed} {
		t.Run(expiry.String(), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store {
				s, err := sfere.NewTTLStore(sfere.TTLOptions{Expiry: expiry, OnEvict: onEvict})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				return s
			})
		})
	}
}
