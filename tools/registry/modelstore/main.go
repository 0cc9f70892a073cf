// Command modelstore is the local model store that pods on the real node fetch from: an OCI
// registry (go-containerregistry's registry handler, the same code as the pinned `registry`
// binary) and an https file server for a directory, behind one TLS listener whose certificate
// is signed by a CA that only this machine's test run knows. A second, plain-HTTP listener on
// loopback takes pushes from the host (oras) without TLS.
//
// Started by airt_operator/dev/modelstore.py for the e2e tier and `make dev`. It exists because
// the pinned registry binary listens on localhost only, over plain HTTP: pods cannot reach that,
// and the fetcher's https path needs a server with a certificate to verify.
package main

import (
	"errors"
	"flag"
	"log"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	tlsAddr := flag.String("tls-addr", "", "address of the TLS listener (host:port)")
	plainAddr := flag.String("plain-addr", "127.0.0.1:0", "address of the plain-HTTP loopback listener")
	cert := flag.String("cert", "", "PEM certificate for the TLS listener")
	key := flag.String("key", "", "PEM key for the TLS listener")
	files := flag.String("files", "", "directory served under /files/")
	flag.Parse()
	if *tlsAddr == "" || *plainAddr == "" || *cert == "" || *key == "" || *files == "" {
		log.Fatal("modelstore: -tls-addr, -plain-addr, -cert, -key and -files are required")
	}

	oci := registry.New()
	fileServer := http.StripPrefix("/files/", http.FileServer(http.Dir(*files)))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/files/") {
			fileServer.ServeHTTP(w, r)
			return
		}
		oci.ServeHTTP(w, r)
	})

	errs := make(chan error, 2)
	go func() { errs <- http.ListenAndServeTLS(*tlsAddr, *cert, *key, mux) }()
	go func() { errs <- http.ListenAndServe(*plainAddr, mux) }()
	log.Printf("modelstore: https on %s, http on %s, files from %s", *tlsAddr, *plainAddr, *files)
	err := <-errs
	if !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
