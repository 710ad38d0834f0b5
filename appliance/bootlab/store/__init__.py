"""The model store: content-addressed blobs, snapshots made of hard links to them, and names.

    /var/lib/bootlab/store/blobs/sha256/<hex>     every file once, read-only, by content
    /var/lib/bootlab/store/partial/<hex>          downloads in progress (resumable)
    /var/lib/bootlab/store/snapshots/<id>/...     a model directory: hard links to blobs
    /var/lib/bootlab/store/refs/<name>.json       what a name points to, and where it came from
    /var/lib/bootlab/models/<name> -> snapshot    the directory serve and train open

Nothing is visible under a name until every file is verified: snapshots are built aside and
renamed into place, names are swapped with an atomic symlink replace."""
