/* Tiny C unit test framework: TEST(name) registers itself; the runner in
 * runner.c forks each test with a timeout and reports. */
#ifndef LR_TEST_H
#define LR_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*lr_test_fn)(void);
void lr_test_register(const char *name, lr_test_fn fn);

#define TEST(name)                                                            \
  static void test_##name(void);                                              \
  __attribute__((constructor)) static void reg_##name(void)                   \
  {                                                                           \
    lr_test_register(#name, test_##name);                                     \
  }                                                                           \
  static void test_##name(void)

#define FAIL_(...)                                                            \
  do {                                                                        \
    fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                         \
    fprintf(stderr, __VA_ARGS__);                                             \
    fprintf(stderr, "\n");                                                    \
    exit(1);                                                                  \
  } while (0)

#define ASSERT(c)                                                             \
  do {                                                                        \
    if (!(c)) FAIL_("assertion failed: %s", #c);                              \
  } while (0)

#define ASSERT_EQ(a, b)                                                       \
  do {                                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);                       \
    if (a_ != b_) FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);            \
  } while (0)

#define ASSERT_STREQ(a, b)                                                    \
  do {                                                                        \
    const char *a_ = (a), *b_ = (b);                                          \
    if (!a_ || !b_ || strcmp(a_, b_))                                         \
      FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",         \
            b_ ? b_ : "(null)");                                              \
  } while (0)

#endif
