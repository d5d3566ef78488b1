// SPDX-License-Identifier: BSD-3-Clause
/*
 * mesh: mptcpdock's mptcpd plugin for the kernel's userspace path manager.
 *
 * On each established MPTCP connection:
 *  - the listening side (server) announces (ADD_ADDR) each of its other local addresses of
 *    the connection's family, with an address id from mptcpd's id manager (1..255, never the
 *    placeholder 0 that mptcpd 0.13's sspi passes and libmptcpd refuses), and a listener on
 *    that address at the connection's port (mptcpd_pm_add_addr), falling back to an
 *    announcement without a listener;
 *  - the connecting side (client) opens one subflow from each of its other local addresses
 *    of that family to the peer's address (mptcpd_pm_add_subflow).
 * Either side adds at most the node's 'subflows' limit (ip mptcp limits, read from the
 * kernel on each connection) of extra subflows per connection. Joins from the peer are left
 * alone. Every action is logged (mptcpd --log=stderr), with its error if it failed.
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ell/log.h>
#include <ell/queue.h>
#include <ell/util.h>

#include <mptcpd/id_manager.h>
#include <mptcpd/network_monitor.h>
#include <mptcpd/path_manager.h>
#include <mptcpd/plugin.h>
#include <mptcpd/types.h>

#define MESH_NAME "mesh"
#define MESH_DEFAULT_SUBFLOWS 2  /* the kernel's default 'subflows' limit */

struct mesh_conn {
        mptcpd_token_t token;
        struct sockaddr_storage laddr;
        struct sockaddr_storage raddr;
        bool server_side;
        struct mptcpd_pm *pm;
        unsigned int budget;
};

static socklen_t sa_len(struct sockaddr const *sa)
{
        return sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static in_port_t sa_port(struct sockaddr const *sa)
{
        return sa->sa_family == AF_INET ? ((struct sockaddr_in const *) sa)->sin_port
                                        : ((struct sockaddr_in6 const *) sa)->sin6_port;
}

static void sa_set_port(struct sockaddr *sa, in_port_t port)
{
        if (sa->sa_family == AF_INET)
                ((struct sockaddr_in *) sa)->sin_port = port;
        else
                ((struct sockaddr_in6 *) sa)->sin6_port = port;
}

static bool same_ip(struct sockaddr const *a, struct sockaddr const *b)
{
        if (a->sa_family != b->sa_family)
                return false;
        if (a->sa_family == AF_INET)
                return ((struct sockaddr_in const *) a)->sin_addr.s_addr
                        == ((struct sockaddr_in const *) b)->sin_addr.s_addr;
        return memcmp(&((struct sockaddr_in6 const *) a)->sin6_addr,
                      &((struct sockaddr_in6 const *) b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer) as plain IPv4. */
static void unmap(struct sockaddr_storage *ss)
{
        struct sockaddr_in6 const *in6 = (struct sockaddr_in6 const *) ss;
        if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
                return;
        struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = in6->sin6_port };
        memcpy(&in4.sin_addr, &in6->sin6_addr.s6_addr[12], 4);
        memset(ss, 0, sizeof(*ss));
        memcpy(ss, &in4, sizeof(in4));
}

static char const *ntop(struct sockaddr const *sa, char *buf, size_t len)
{
        void const *src = sa->sa_family == AF_INET
                ? (void const *) &((struct sockaddr_in const *) sa)->sin_addr
                : (void const *) &((struct sockaddr_in6 const *) sa)->sin6_addr;
        return inet_ntop(sa->sa_family, src, buf, len) ? buf : "?";
}

static void one_address(struct mesh_conn *c, struct mptcpd_interface const *i, struct sockaddr const *sa)
{
        struct sockaddr const *laddr = (struct sockaddr const *) &c->laddr;
        struct sockaddr const *raddr = (struct sockaddr const *) &c->raddr;
        char addr[INET6_ADDRSTRLEN];

        if (c->budget == 0 || sa->sa_family != laddr->sa_family || same_ip(sa, laddr))
                return;
        struct mptcpd_idm *const idm = mptcpd_pm_get_idm(c->pm);
        struct sockaddr_storage local;
        memset(&local, 0, sizeof(local));
        memcpy(&local, sa, sa_len(sa));
        sa_set_port((struct sockaddr *) &local, 0);
        mptcpd_aid_t const id = mptcpd_idm_get_id(idm, (struct sockaddr *) &local);
        if (id == 0) {
                l_error("mesh: no address id left for %s", ntop(sa, addr, sizeof(addr)));
                return;
        }
        int err;
        if (c->server_side) {
                /* a listener on the address at the connection's port: the peer's join to the
                   announced address:port reaches it even when the application listens on one
                   address only */
                sa_set_port((struct sockaddr *) &local, sa_port(laddr));
                err = mptcpd_pm_add_addr(c->pm, (struct sockaddr *) &local, id, c->token);
#ifdef MESH_HAVE_ADD_ADDR_NO_LISTENER  /* mptcpd 0.13 on; 0.12 (bookworm) has no such call */
                if (err != 0) {
                        l_info("mesh: token 0x%08x: announcing %s (id %u) with a listener failed (%s); "
                               "announcing it without one", c->token, ntop(sa, addr, sizeof(addr)), id,
                               strerror(err < 0 ? -err : err));
                        sa_set_port((struct sockaddr *) &local, 0);
                        err = mptcpd_pm_add_addr_no_listener(c->pm, (struct sockaddr *) &local, id, c->token);
                }
#endif
                l_info("mesh: token 0x%08x: ADD_ADDR %s id %u on %s: %s", c->token,
                       ntop(sa, addr, sizeof(addr)), id, i->name, err ? strerror(err < 0 ? -err : err) : "ok");
        } else {
                err = mptcpd_pm_add_subflow(c->pm, c->token, id, 0, (struct sockaddr *) &local, raddr, false);
                char remote[INET6_ADDRSTRLEN];
                l_info("mesh: token 0x%08x: subflow %s (id %u, %s) -> %s port %u: %s", c->token,
                       ntop(sa, addr, sizeof(addr)), id, i->name, ntop(raddr, remote, sizeof(remote)),
                       ntohs(sa_port(raddr)), err ? strerror(err < 0 ? -err : err) : "ok");
        }
        if (err == 0)
                c->budget--;
}

static void one_interface(struct mptcpd_interface const *i, void *data)
{
        struct mesh_conn *const c = data;
        for (struct l_queue_entry const *e = l_queue_get_entries(i->addrs); e; e = e->next)
                one_address(c, i, e->data);
}

static void act(struct mesh_conn *c)
{
        struct mptcpd_nm const *const nm = mptcpd_pm_get_nm(c->pm);
        mptcpd_nm_foreach_interface(nm, one_interface, c);
}

static void got_limits(struct mptcpd_limit const *limits, size_t len, void *data)
{
        struct mesh_conn *const c = data;
        for (size_t n = 0; n < len; n++)
                if (limits[n].type == MPTCPD_LIMIT_SUBFLOWS)
                        c->budget = limits[n].limit;
        l_info("mesh: token 0x%08x (%s): up to %u extra subflow(s) (the node's subflows limit)", c->token,
               c->server_side ? "server: announcing" : "client: joining", c->budget);
        act(c);
        l_free(c);
}

static void mesh_connection_established(mptcpd_token_t token, struct sockaddr const *laddr,
                                        struct sockaddr const *raddr, bool server_side,
                                        struct mptcpd_pm *pm)
{
        struct mesh_conn *const c = l_new(struct mesh_conn, 1);
        c->token = token;
        memcpy(&c->laddr, laddr, sa_len(laddr));
        memcpy(&c->raddr, raddr, sa_len(raddr));
        unmap(&c->laddr);
        unmap(&c->raddr);
        c->server_side = server_side;
        c->pm = pm;
        c->budget = MESH_DEFAULT_SUBFLOWS;
        if (mptcpd_kpm_get_limits(pm, got_limits, c) != 0) {
                l_info("mesh: token 0x%08x: the kernel's limits are unreadable; using %u", token, c->budget);
                act(c);
                l_free(c);
        }
}

static struct mptcpd_plugin_ops const pm_ops = {
        .connection_established = mesh_connection_established,
};

static int mesh_init(struct mptcpd_pm *pm)
{
        (void) pm;
        if (!mptcpd_plugin_register_ops(MESH_NAME, &pm_ops)) {
                l_error("mesh: failed to register the plugin's operations");
                return -1;
        }
        l_info("mesh: MPTCP fullmesh-like path manager (mptcpdock) initialized");
        return 0;
}

static void mesh_exit(struct mptcpd_pm *pm)
{
        (void) pm;
        l_info("mesh: exited");
}

MPTCPD_PLUGIN_DEFINE(mesh, "mptcpdock: announce or join from every other address",
                     MPTCPD_PLUGIN_PRIORITY_DEFAULT, mesh_init, mesh_exit)
