module dso.local/pause

go 1.26
