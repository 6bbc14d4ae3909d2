/* References across nodes. An object stored in one node's store has that
 * node as its home; an ObjectRef carries its home when it crosses to
 * another node (lua/lray/runtime.lua), and the process that receives it
 * tells its own node (ref.home). A process that receives refs in a lent
 * message names the lender's node instead, which holds them itself (and at
 * their home while it counts them): holds may chain. So does the head's
 * node for an actor's arguments a joined node lent (lend.home). That node
 * then:
 *
 *   - holds the object at its home while it counts it here: one `ref` over
 *     its link to the home (peer.c) when the count first rises, one `unref`
 *     when the object is freed here. The home sees the link as one more
 *     holder (a client), so the object lives there while any process on any
 *     node holds it, and a node that dies lets go of all it held (its link
 *     closes);
 *   - asks the home for the value record when a process here waits for it
 *     (`sub`; the home answers `obj` on the same link, naming its store),
 *     and hands the record to the waiters, who copy the object (transfer.c);
 *   - passes a claim or unlend of a lend held by another node on to that
 *     node (claim.node), on the same link and after the refs the receiver
 *     sent before it, so the home counts the receiver before the lend ends.
 *
 * A copy this node makes of a remote object is its own object (objdir.c);
 * the hold at the home goes with the object's entry here. A link that
 * fails after it was up is opened again once and the holds and questions
 * are sent again; a home that cannot be reached fails the questions with
 * ObjectLostError. State is one address and two flags per object.
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <stdio.h>
#include <string.h>
#include "raylet/node.h"

static int to_home(lr_node_t *n, const char *home, const void *m)
{
  if (n->to_peer) return n->to_peer(n, home, m);
  return lr_peer_to(n, home, m);
}

int lr_xref_is_remote(const lr_node_t *n, const char *addr, size_t len)
{
  if (!len || len >= LR_XREF_ADDR_MAX) return 0;
  if (len > 5 && !memcmp(addr, "unix:", 5)) return 0;
  return !(n->tcp_on && strlen(n->tcp_addr) == len && !memcmp(n->tcp_addr, addr, len));
}

void lr_xref_sync(lr_node_t *n, lr_obj_t *o)
{
  if (!o->home || o->home_held || o->count <= 0) return;
  lr_m_ref_t r = LR_MSG_INIT(REF);
  LR_SET_CSTR(r.id, o->id);
  if (to_home(n, o->home, &r) == 0) o->home_held = 1;
}

int lr_xref_held_at(const lr_obj_t *o, const char *addr)
{
  return o && o->home && o->home_held && addr && !strcmp(o->home, addr);
}

void lr_xref_home(lr_node_t *n, lr_obj_t *o, const lr_pf_t *home)
{
  if (o->home || !home->n || !lr_xref_is_remote(n, home->v.s.p, home->v.s.n)) return;
  /* Stored or promised here: this node is a home itself. (A ref handed
   * back here from a node that holds it here would else make the two hold
   * each other for ever.) */
  if (o->st != LR_O_PENDING || o->expected_from) return;
  o->home = lr_pstrdup(home);
  lr_xref_sync(n, o);
}

/* The readers waiting for o here get ObjectLostError naming its home. */
static void unreachable(lr_node_t *n, lr_obj_t *o)
{
  char msg[600];
  snprintf(msg, sizeof(msg), "object %s is lost: its home node %s, whose store holds it, cannot"
           " be reached from this node (%s)", o->id, o->home, n->tcp_on ? n->tcp_addr : "?");
  lr_obj_fail_waiters(n, o, "ObjectLostError", msg);
}

void lr_xref_ask(lr_node_t *n, lr_obj_t *o)
{
  if (!o->home || o->home_asked || o->st != LR_O_PENDING) return;
  lr_m_sub_t s = LR_MSG_INIT(SUB);
  lr_pitem_t id;
  id.v.s = (lr_pstr_t){o->id, strlen(o->id)};
  LR_SET_ITEMS(s.ids, &id, 1);
  if (to_home(n, o->home, &s) == 0) o->home_asked = 1;
  else unreachable(n, o);
}

void lr_xref_forget(lr_node_t *n, lr_obj_t *o)
{
  if (o->home && o->home_held) {
    lr_m_unref_t u = LR_MSG_INIT(UNREF);
    lr_pitem_t id;
    id.v.s = (lr_pstr_t){o->id, strlen(o->id)};
    LR_SET_ITEMS(u.ids, &id, 1);
    to_home(n, o->home, &u);
  }
  lr_free(o->home);
  o->home = NULL;
  o->home_held = o->home_asked = 0;
}

int lr_xref_forward(lr_node_t *n, const lr_pf_t *node, const void *m)
{
  if (!node->n || !lr_xref_is_remote(n, node->v.s.p, node->v.s.n)) return 0;
  char *addr = lr_pstrdup(node);
  /* The token alone: the other node holds the lend, this one nothing. */
  const lr_prec_t *r = m;
  if (r->type == LR_PT_CLAIM) {
    lr_m_claim_t c = LR_MSG_INIT(CLAIM);
    c.token = ((const lr_m_claim_t *)m)->token;
    to_home(n, addr, &c);
  } else {
    lr_m_unlend_t u = LR_MSG_INIT(UNLEND);
    u.token = ((const lr_m_unlend_t *)m)->token;
    to_home(n, addr, &u);
  }
  lr_free(addr);
  return 1;
}

void lr_xref_peer_down(lr_node_t *n, const char *addr, int was_up)
{
  lr_obj_t *o, *tmp;
  HASH_ITER(hh, n->objects, o, tmp) {
    if (!o->home || strcmp(o->home, addr)) continue;
    int asked = o->home_asked;
    o->home_held = o->home_asked = 0;
    if (was_up) { /* a link that worked: once more, on a new one */
      lr_xref_sync(n, o);
      if (asked) lr_xref_ask(n, o);
    } else if (asked) {
      unreachable(n, o);
    }
  }
}
