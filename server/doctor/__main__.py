from . import doctor

doctor()
