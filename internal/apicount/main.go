// Command apicount counts the exported identifiers of the packages in the
// given directories (non-test files only): what sqspool promises under
// semver. Each exported top-level const, var, func and type counts once, and
// so does each exported method, struct field and interface method of an
// exported type. From the repo root:
//
//	go run ./internal/apicount . catcher sqsfake sink sink/dynamofake otelsqspool
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"strings"
)

func main() {
	total := 0
	for _, dir := range os.Args[1:] {
		n, err := count(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "apicount:", err)
			os.Exit(1)
		}
		fmt.Printf("%5d  %s\n", n, dir)
		total += n
	}
	fmt.Printf("%5d  total\n", total)
}

func count(dir string) (int, error) {
	fset := token.NewFileSet()
	notTest := func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }
	pkgs, err := parser.ParseDir(fset, dir, notTest, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			for _, decl := range f.Decls {
				n += countDecl(decl)
			}
		}
	}
	return n, nil
}

func countDecl(decl ast.Decl) int {
	n := 0
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return 0
		}
		if d.Recv != nil && !exportedRecv(d.Recv.List[0].Type) {
			return 0
		}
		return 1
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.ValueSpec:
				for _, name := range s.Names {
					if name.IsExported() {
						n++
					}
				}
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					n += 1 + members(s.Type)
				}
			}
		}
	}
	return n
}

// members counts a type's exported fields or interface methods.
func members(t ast.Expr) int {
	var list *ast.FieldList
	switch t := t.(type) {
	case *ast.StructType:
		list = t.Fields
	case *ast.InterfaceType:
		list = t.Methods
	default:
		return 0
	}
	n := 0
	for _, f := range list.List {
		for _, name := range f.Names {
			if name.IsExported() {
				n++
			}
		}
	}
	return n
}

func exportedRecv(t ast.Expr) bool {
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.IsExported()
		default:
			return false
		}
	}
}
