"""
Two small jobs for scripts/s3/start.sh that need Swift's own Python library
(Debian package python3-swift), run with Debian's /usr/bin/python3:

  swift-node.py rings ETC_DIR OBJECT_PORT CONTAINER_PORT ACCOUNT_PORT
      Builds one-device, one-replica rings for the three storage servers
      (skipped for a ring that already points at the right port).

  swift-node.py serve ETC_DIR SERVER_NAME
      Runs one Swift WSGI server from ETC_DIR/SERVER_NAME.conf. Swift reads
      swift.conf from /etc/swift unless told otherwise, and logs to syslog,
      which this machine does not have: point it at ETC_DIR and log to stderr
      (start.sh sends stderr to a file).
"""
import os
import sys


def build_rings(etc, ports):
    # Reading an existing ring validates swift.conf, which Swift looks for in
    # /etc/swift unless told otherwise (a restart from a kept state directory).
    from swift.common import utils
    utils.set_swift_dir(etc)
    from swift.common.ring import RingBuilder

    for kind, port in zip(('object', 'container', 'account'), ports):
        ring_file = os.path.join(etc, kind + '.ring.gz')
        if os.path.exists(ring_file):
            from swift.common.ring import Ring
            devs = [d for d in Ring(ring_file).devs if d]
            if len(devs) == 1 and devs[0]['port'] == port:
                continue
        # 2^6 partitions are plenty for one device; one replica; no min move time.
        builder = RingBuilder(6, 1, 0)
        builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
                         'device': 'disk', 'weight': 1.0})
        builder.rebalance()
        builder.get_ring().save(ring_file)


def serve(etc, server):
    from swift.common import utils
    utils.set_swift_dir(etc)
    from swift.common.storage_policy import reload_storage_policies
    reload_storage_policies()
    from swift.common.wsgi import run_wsgi
    return run_wsgi(os.path.join(etc, server + '.conf'), server, verbose=True)


def main(argv):
    if len(argv) == 6 and argv[1] == 'rings':
        build_rings(argv[2], [int(p) for p in argv[3:6]])
        return 0
    if len(argv) == 4 and argv[1] == 'serve':
        return serve(argv[2], argv[3])
    print('usage: swift-node.py rings ETC OBJ_PORT CONT_PORT ACCT_PORT | serve ETC SERVER', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
