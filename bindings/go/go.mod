module libvhostuser-cxx/bindings/go

go 1.22
