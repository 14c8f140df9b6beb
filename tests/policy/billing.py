"""The billing intent the intent tests share: five ways of asking about a bill."""

BILLING_EXAMPLES = """\
  billing:
    examples:
      - where can I download my invoice?
      - I was charged twice this month
      - how do I update my credit card?
      - can I get a refund for my subscription?
      - why is my bill higher than last month?
"""
BILLING_TO_CLOUD = """\
  - name: billing-to-cloud
    when: {intent: billing}
    route: cloud
"""
