/* Tests for references across nodes (raylet/xref.c with objdir.c) on a fake
 * node (fake_node.h) whose messages to other nodes are captured instead of
 * sent: holds at an object's home (once, let go when freed), questions to
 * the home and its answer to the readers here, claims passed on in order
 * after the refs, links that close. */
#include "test/fake_node.h"
#include "test/test.h"

#define ID(s) (s), strlen(s)
#define HOME "127.0.0.2:7000"
#define SELF "127.0.0.1:7000"

/* -- What this node sent to other nodes ------------------------------------ */

typedef struct {
  int type;
  char to[64], what[64]; /* the address; the id or token */
} sent_t;

static sent_t sent[64];
static int nsent, refuse;

static void copy_str(char *out, size_t len, const lr_pf_t *f)
{
  snprintf(out, len, "%.*s", f->n ? (int)f->v.s.n : 0, f->n ? f->v.s.p : "");
}

static int capture(lr_node_t *n, const char *address, const void *m)
{
  (void)n;
  if (refuse) return -1;
  ASSERT(nsent < 64);
  sent_t *s = &sent[nsent++];
  s->type = ((const lr_prec_t *)m)->type;
  snprintf(s->to, sizeof(s->to), "%s", address);
  switch (s->type) {
  case LR_PT_REF: copy_str(s->what, sizeof(s->what), &((const lr_m_ref_t *)m)->id); break;
  case LR_PT_CLAIM: copy_str(s->what, sizeof(s->what), &((const lr_m_claim_t *)m)->token); break;
  case LR_PT_UNLEND: copy_str(s->what, sizeof(s->what), &((const lr_m_unlend_t *)m)->token); break;
  case LR_PT_UNREF: {
    const lr_m_unref_t *u = m;
    ASSERT_EQ(u->ids.n, 1);
    snprintf(s->what, sizeof(s->what), "%.*s", (int)u->ids.items[0].v.s.n, u->ids.items[0].v.s.p);
    break;
  }
  case LR_PT_SUB: {
    const lr_m_sub_t *q = m;
    ASSERT_EQ(q->ids.n, 1);
    snprintf(s->what, sizeof(s->what), "%.*s", (int)q->ids.items[0].v.s.n, q->ids.items[0].v.s.p);
    break;
  }
  default: FAIL_("unexpected message type %d to another node", s->type);
  }
  return 0;
}

static int nsent_of(int type)
{
  int k = 0;
  for (int i = 0; i < nsent; i++) k += sent[i].type == type;
  return k;
}

static lr_node_t *node(void)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  n->to_peer = capture;
  n->tcp_on = 1;
  snprintf(n->tcp_addr, sizeof(n->tcp_addr), "%s", SELF);
  nsent = refuse = 0;
  return n;
}

/* A ref with home, as node.c handles one from a process. */
static void ref_from(lr_node_t *n, lr_client_t *c, const char *id, const char *home)
{
  lr_pf_t h;
  memset(&h, 0, sizeof(h));
  LR_SET_CSTR(h, home);
  lr_obj_hold(n, c, ID(id));
  lr_xref_home(n, lr_obj_find(n, ID(id)), &h);
}

static int freed(lr_node_t *n, const char *id) { return fake_freed(n, id); }

/* -- Holds at the home ------------------------------------------------------ */

TEST(xref_holds_at_the_home_once_and_lets_go_when_freed)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  n->free_grace = 0;
  ref_from(n, a, "o1", HOME);
  ref_from(n, b, "o1", HOME);
  ASSERT_EQ(nsent, 1);
  ASSERT_EQ(sent[0].type, LR_PT_REF);
  ASSERT_STREQ(sent[0].to, HOME);
  ASSERT_STREQ(sent[0].what, "o1");
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(!freed(n, "o1"));
  lr_obj_unhold(n, b, ID("o1"));
  ASSERT(freed(n, "o1"));
  ASSERT_EQ(nsent, 2);
  ASSERT_EQ(sent[1].type, LR_PT_UNREF);
  ASSERT_STREQ(sent[1].what, "o1");
  /* Held again later: a new hold, after the unref on the same link. */
  ref_from(n, a, "o1", HOME);
  ASSERT_EQ(nsent, 3);
  ASSERT_EQ(sent[2].type, LR_PT_REF);
  fake_node_free(n);
}

TEST(xref_a_lend_held_here_holds_at_the_home_too)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", HOME);
  lr_m_lend_t l = LR_MSG_INIT(LEND);
  lr_pitem_t id;
  id.v.s = (lr_pstr_t){"o1", 2};
  LR_SET_CSTR(l.token, "t1");
  LR_SET_ITEMS(l.ids, &id, 1);
  lr_obj_lend(n, &l);
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(!freed(n, "o1")); /* the lend keeps it, and so the hold at home */
  ASSERT_EQ(nsent_of(LR_PT_UNREF), 0);
  lr_obj_claim(n, ID("t1"));
  ASSERT(freed(n, "o1"));
  ASSERT_EQ(nsent_of(LR_PT_UNREF), 1);
  fake_node_free(n);
}

/* An actor's arguments lent by a joined node (lend.home, as the head sends
 * its own node): the ids this node does not store are held there; the
 * unlend at the actor's end lets go. */
TEST(xref_a_lend_with_a_home_holds_the_ids_not_stored_here_there)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0;
  lr_m_put_t p = LR_MSG_INIT(PUT);
  LR_SET_CSTR(p.id, "o2");
  LR_SET_CSTR(p.data, "x");
  lr_obj_put(n, a, &p);
  lr_m_lend_t l = LR_MSG_INIT(LEND);
  lr_pitem_t ids[2];
  ids[0].v.s = (lr_pstr_t){"o1", 2};
  ids[1].v.s = (lr_pstr_t){"o2", 2};
  LR_SET_CSTR(l.token, "args:a1");
  LR_SET_ITEMS(l.ids, ids, 2);
  LR_SET_CSTR(l.home, HOME);
  lr_obj_lend(n, &l);
  ASSERT_EQ(nsent, 1);
  ASSERT_EQ(sent[0].type, LR_PT_REF);
  ASSERT_STREQ(sent[0].to, HOME);
  ASSERT_STREQ(sent[0].what, "o1");
  ASSERT_STREQ(lr_obj_find(n, ID("o1"))->home, HOME);
  ASSERT(!lr_obj_find(n, ID("o2"))->home); /* stored here */
  lr_obj_unhold(n, a, ID("o2"));
  lr_obj_unlend(n, ID("args:a1"));
  ASSERT(freed(n, "o1"));
  ASSERT(freed(n, "o2"));
  ASSERT_EQ(nsent, 2);
  ASSERT_EQ(sent[1].type, LR_PT_UNREF);
  ASSERT_STREQ(sent[1].what, "o1");
  fake_node_free(n);
}

/* A copy from the home ends its pull there with `pull {done}`, which ends
 * every hold of the link: not sent while this node holds it there. */
TEST(xref_held_at_the_home_only_once_the_ref_went_there)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", HOME);
  ASSERT_EQ(lr_xref_held_at(lr_obj_find(n, ID("o1")), HOME), 1);
  ASSERT_EQ(lr_xref_held_at(lr_obj_find(n, ID("o1")), "127.0.0.3:7000"), 0);
  ASSERT_EQ(lr_xref_held_at(NULL, HOME), 0);
  refuse = 1; /* the link is down: no hold there */
  ref_from(n, a, "o2", HOME);
  ASSERT_EQ(lr_xref_held_at(lr_obj_find(n, ID("o2")), HOME), 0);
  ref_from(n, a, "o3", SELF); /* not another node's */
  ASSERT_EQ(lr_xref_held_at(lr_obj_find(n, ID("o3")), SELF), 0);
  fake_node_free(n);
}

TEST(xref_a_home_that_is_this_node_no_tcp_address_or_for_a_stored_object_is_not_one)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", SELF);
  ref_from(n, a, "o2", "unix:/tmp/x/node.sock");
  char longaddr[LR_XREF_ADDR_MAX + 10];
  memset(longaddr, '1', sizeof(longaddr) - 1);
  longaddr[sizeof(longaddr) - 1] = 0;
  ref_from(n, a, "o3", longaddr);
  ASSERT_EQ(nsent, 0);
  ASSERT(!lr_obj_find(n, ID("o1"))->home);
  ASSERT(!lr_obj_find(n, ID("o2"))->home);
  ASSERT(!lr_obj_find(n, ID("o3"))->home);
  /* Stored or promised here: no other home (handed back, it would make
   * two nodes hold each other for ever). */
  lr_m_put_t p = LR_MSG_INIT(PUT);
  LR_SET_CSTR(p.id, "o5");
  LR_SET_CSTR(p.data, "x");
  lr_obj_put(n, a, &p);
  ref_from(n, a, "o5", HOME);
  lr_m_expect_t e = LR_MSG_INIT(EXPECT);
  LR_SET_CSTR(e.id, "o6");
  lr_obj_expect(n, a, &e);
  ref_from(n, a, "o6", HOME);
  ASSERT(!lr_obj_find(n, ID("o5"))->home);
  ASSERT(!lr_obj_find(n, ID("o6"))->home);
  ASSERT_EQ(nsent, 0);
  /* The first home an object is given stays. */
  ref_from(n, a, "o4", HOME);
  ref_from(n, a, "o4", "127.0.0.3:7000");
  ASSERT_STREQ(lr_obj_find(n, ID("o4"))->home, HOME);
  ASSERT_EQ(nsent, 1);
  fake_node_free(n);
}

/* -- Questions to the home -------------------------------------------------- */

TEST(xref_readers_here_ask_the_home_once_and_get_its_record)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  ref_from(n, a, "o1", HOME);
  lr_obj_subscribe(n, a, ID("o1"));
  lr_obj_subscribe(n, b, ID("o1"));
  ASSERT_EQ(nsent_of(LR_PT_SUB), 1);
  ASSERT_STREQ(sent[1].what, "o1");
  /* The home's answer names its store; both readers get it as it is. */
  lr_m_obj_t m = LR_MSG_INIT(OBJ);
  lr_pitem_t shm[2];
  shm[0].v.i = 4096;
  shm[1].v.i = 1000;
  LR_SET_CSTR(m.id, "o1");
  LR_SET_ITEMS(m.shm, shm, 2);
  LR_SET_CSTR(m.node, HOME);
  lr_obj_remote_value(n, &m);
  lr_client_t *cs[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    lr_m_obj_t *got = fake_msg(cs[i], LR_PT_OBJ, 0);
    ASSERT(got);
    ASSERT_STREQ(fake_str(&got->node), HOME);
    ASSERT_EQ(got->shm.items[0].v.i, 4096);
  }
  lr_obj_t *o = lr_obj_find(n, ID("o1"));
  ASSERT_EQ(o->st, LR_O_PENDING); /* this node's store does not have it */
  ASSERT(o->shm_len < 0);
  /* A later reader asks again. */
  lr_obj_subscribe(n, b, ID("o1"));
  ASSERT_EQ(nsent_of(LR_PT_SUB), 2);
  fake_node_free(n);
}

TEST(xref_a_home_that_cannot_be_reached_fails_its_readers)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", HOME);
  refuse = 1;
  lr_obj_subscribe(n, a, ID("o1"));
  lr_m_obj_t *got = fake_msg(a, LR_PT_OBJ, 0);
  ASSERT(got);
  ASSERT_STREQ(fake_str(&got->etype), "ObjectLostError");
  ASSERT(strstr(fake_str(&got->emsg), HOME));
  fake_node_free(n);
}

TEST(xref_a_link_that_was_up_is_opened_again_one_that_never_was_fails)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", HOME);
  lr_obj_subscribe(n, a, ID("o1"));
  ASSERT_EQ(nsent, 2);
  lr_xref_peer_down(n, HOME, 1); /* the other side dropped our hold: again */
  ASSERT_EQ(nsent, 4);
  ASSERT_EQ(sent[2].type, LR_PT_REF);
  ASSERT_EQ(sent[3].type, LR_PT_SUB);
  ASSERT_EQ(fake_count(a, LR_PT_OBJ), 0);
  lr_xref_peer_down(n, HOME, 0); /* and that one never came up */
  ASSERT_EQ(fake_count(a, LR_PT_OBJ), 1);
  ASSERT_STREQ(fake_str(&((lr_m_obj_t *)fake_msg(a, LR_PT_OBJ, 0))->etype), "ObjectLostError");
  ASSERT_EQ(lr_obj_find(n, ID("o1"))->home_held, 0);
  fake_node_free(n);
}

/* -- Claims of lends held elsewhere ------------------------------------------ */

TEST(xref_a_claim_for_another_node_goes_there_after_the_ref)
{
  lr_node_t *n = node();
  lr_client_t *a = fake_driver(n, "job1");
  ref_from(n, a, "o1", HOME);
  lr_m_claim_t c = LR_MSG_INIT(CLAIM);
  LR_SET_CSTR(c.token, "t1");
  LR_SET_CSTR(c.node, HOME);
  ASSERT_EQ(lr_xref_forward(n, &c.node, &c), 1);
  ASSERT_EQ(nsent, 2);
  ASSERT_EQ(sent[0].type, LR_PT_REF); /* the home counts us first */
  ASSERT_EQ(sent[1].type, LR_PT_CLAIM);
  ASSERT_STREQ(sent[1].what, "t1");
  ASSERT_EQ(n->ntombs, 0); /* nothing remembered here */
  lr_m_unlend_t u = LR_MSG_INIT(UNLEND);
  LR_SET_CSTR(u.token, "t2");
  LR_SET_CSTR(u.node, HOME);
  ASSERT_EQ(lr_xref_forward(n, &u.node, &u), 1);
  ASSERT_EQ(sent[2].type, LR_PT_UNLEND);
  /* This node's own lends, or none named: handled here. */
  LR_SET_CSTR(c.node, SELF);
  ASSERT_EQ(lr_xref_forward(n, &c.node, &c), 0);
  lr_m_claim_t plain = LR_MSG_INIT(CLAIM);
  ASSERT_EQ(lr_xref_forward(n, &plain.node, &plain), 0);
  ASSERT_EQ(nsent, 3);
  fake_node_free(n);
}

/* -- Other copies: the nodes a reader tries when the holder cannot serve --- */

TEST(xref_other_copies_are_asked_of_the_live_nodes_but_this_one_and_the_holder)
{
  lr_node_t *n = node();
  static const char *ids[] = {"fakenode", "nb", "nc", "nd", "ne"};
  static const char *addrs[] = {SELF, HOME, "127.0.0.3:7000", "127.0.0.4:7000", ""};
  static const int alive[] = {1, 1, 0, 1, 1};
  lr_m_node_info_t info[5];
  lr_pitem_t items[5];
  for (int i = 0; i < 5; i++) {
    lr_m_node_info_t x = LR_MSG_INIT(NODE_INFO);
    info[i] = x;
    LR_SET_CSTR(info[i].node_id, ids[i]);
    if (addrs[i][0]) LR_SET_CSTR(info[i].address, addrs[i]);
    LR_SET_BOOL(info[i].alive, alive[i]);
    items[i].v.rec = &info[i];
  }
  lr_m_cluster_view_t v = LR_MSG_INIT(CLUSTER_VIEW);
  LR_SET_ITEMS(v.nodes, items, 5);
  LR_SET_BOOL(v.full, 1);
  lr_view_update(n, &v);
  size_t at = 0;
  const char *next = lr_view_other(n, &at, HOME);
  ASSERT(next);
  ASSERT_STREQ(next, "127.0.0.4:7000"); /* not this node, the holder, a dead one or no address */
  ASSERT(!lr_view_other(n, &at, HOME));
  at = 0;
  ASSERT_STREQ(lr_view_other(n, &at, NULL), HOME);
  fake_node_free(n);
}
