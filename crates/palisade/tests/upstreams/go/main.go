// An upstream on Go's net/http ServeMux: the path is decoded into URL.Path (%2F included),
// and the mux cleans `//` and dot segments by redirecting.
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

func internal(r *http.Request) bool {
	h := strings.ToLower(r.Host)
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".") == "internal.test"
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/secure/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "PROTECTED %s", r.URL.Path)
	})
	mux.HandleFunc("/_debug", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "DEBUG")
	})
	mux.HandleFunc("/items/", func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimPrefix(r.URL.Path, "/items/") == "_debug" {
			fmt.Fprint(w, "DEBUG")
			return
		}
		fmt.Fprintf(w, "PUBLIC %s", r.URL.Path)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if internal(r) {
			fmt.Fprint(w, "INTERNAL")
			return
		}
		fmt.Fprintf(w, "PUBLIC %s", r.URL.Path)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
